"""engine/train/dataset.py: the dataset a run reads, and the settings bound to its manifest."""

from __future__ import annotations

from pathlib import Path

import pytest

from bagmar_cli.engine.train.dataset import bind_dataset, resolve_data_root
from bagmar_cli.errors import SettingError
from bagmar_cli.settings import DataSettings, changed_settings, load_settings


def test_a_given_root_wins_and_no_dataset_is_a_usage_error(tmp_path: Path) -> None:
    assert resolve_data_root(DataSettings(root=tmp_path, dataset="cifar10")) == tmp_path
    with pytest.raises(SettingError, match="no dataset"):
        resolve_data_root(DataSettings())
    with pytest.raises(SettingError, match="unknown dataset 'cifar1000'"):
        resolve_data_root(DataSettings(dataset="cifar1000"))


def test_bind_dataset_records_what_the_manifest_says(digits_data: Path) -> None:
    settings = load_settings("digits_lt", flags={"data.root": digits_data, "data.imb": 100.0})
    bound, root, manifest = bind_dataset(settings)
    assert root == digits_data.resolve() and bound.data.root == root
    assert bound.data.imb == manifest.imb == 10  # the imb-10 set, not the 100 asked for
    assert bound.data.val_per_class == manifest.val_per_class
    assert ("data.imb", 100.0, 10.0) in changed_settings(settings, bound)


@pytest.mark.parametrize("preset", ["imagenet_lt", "inat2018", "places_lt"])
def test_a_large_scale_preset_reads_the_folder_prepare_writes_for_its_benchmark(tmp_path, monkeypatch, preset) -> None:
    monkeypatch.setenv("BAGMAR_DATA_DIR", str(tmp_path))
    assert resolve_data_root(load_settings(preset).data) == tmp_path / preset  # prepare_benchmark's default --out


def test_a_preset_whose_dataset_was_never_prepared_says_how_to_prepare_it(cli, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("BAGMAR_DATA_DIR", str(tmp_path))
    outcome = cli("train", "--preset", "imagenet_lt", "--out", tmp_path / "run")
    assert outcome.code == 1 and not (tmp_path / "run").exists()
    assert outcome.err == (
        f"Error: no prepared dataset at {tmp_path / 'imagenet_lt'}, where `bagmar prepare imagenet_lt` writes it: "
        "prepare it first, or pass --data DIR\n"
    )
