"""The one registry of sources: every entry declares its kind, options and prepare step; default directories."""

from pathlib import Path

import pytest

from bagmar_cli.data import (
    PrepareOptions,
    dataset_names,
    default_data_dir,
    get_dataset,
    get_source,
    prepare_source,
    source_names,
)
from bagmar_cli.data.sources.options import SPECIFIC
from bagmar_cli.data.sources.registry import FILES, TENSORS
from bagmar_cli.errors import SettingError


def test_every_dataset_is_registered():
    assert dataset_names() == ["cifar10", "cifar100", "digits", "fashion_mnist"]


@pytest.mark.parametrize("name", dataset_names())
def test_specs_are_consistent(name):
    spec = get_dataset(name)
    channels = spec.image_size[0]
    assert spec.name == name and spec.num_classes >= 2 and len(spec.image_size) == 3
    assert len(spec.mean) == len(spec.std) == channels
    assert all(0 < m < 1 for m in spec.mean) and all(0 < s < 1 for s in spec.std)
    assert spec.default_preset == f"{name}_lt" and callable(spec.load_source)


def test_unknown_dataset_suggests_close_names():
    with pytest.raises(
        SettingError, match=r"unknown dataset 'cifar' \(did you mean cifar10, cifar100\?\); choose from"
    ):
        get_dataset("cifar")
    with pytest.raises(SettingError, match=r"unknown dataset 'imagenet'; choose from cifar10, cifar100, digits"):
        get_dataset("imagenet")


def test_default_data_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("BAGMAR_DATA_DIR", raising=False)
    assert default_data_dir("cifar100", 100.0) == Path("data/cifar100-lt-imb100")
    monkeypatch.setenv("BAGMAR_DATA_DIR", str(tmp_path))
    assert default_data_dir("cifar10", 12.5, "step") == tmp_path / "cifar10-lt-imb12.5-step"


def test_every_source_is_registered_once_in_memory_ones_first():
    assert source_names() == [
        "cifar10", "cifar100", "digits", "fashion_mnist", "folder", "imagenet_lt", "inat2018", "places_lt",
    ]  # fmt: skip


@pytest.mark.parametrize("name", source_names())
def test_each_source_declares_its_kind_options_and_prepare_step(name):
    source = get_source(name)
    assert source.name == name and source.kind in (TENSORS, FILES) and callable(source.prepare)
    assert source.accepts <= set(SPECIFIC) and source.accepts
    assert (source.spec is not None) == (source.kind == TENSORS) == (name in dataset_names())
    assert source.needs_root == (source.kind == FILES) == ("root" in source.accepts)


@pytest.mark.parametrize("name", source_names())
def test_each_source_refuses_an_option_it_does_not_take_before_reading_anything(name, tmp_path):
    refused = [option for option in SPECIFIC if option not in get_source(name).accepts]
    values = {"root": tmp_path, "splits": tmp_path, "source": tmp_path, "subset": "cao2019", "measure_stats": True}
    option = refused[0]
    given = PrepareOptions(**{option: values.get(option, 2)}, out=tmp_path / "ds")
    with pytest.raises(SettingError, match=rf"^`{option}` does not apply to {name}$"):
        prepare_source(name, given)
    assert not (tmp_path / "ds").exists()


@pytest.mark.parametrize("name", [name for name in source_names() if get_source(name).kind == FILES])
def test_an_image_file_source_needs_its_root(name, tmp_path):
    with pytest.raises(SettingError, match=rf"^prepare {name} needs `root` DIR"):
        prepare_source(name, PrepareOptions(out=tmp_path / "ds"))


def test_an_unknown_source_suggests_close_names_from_every_kind():
    with pytest.raises(
        SettingError, match=r"unknown dataset 'places' \(did you mean places_lt\?\); choose from cifar10"
    ):
        get_source("places")
    with pytest.raises(
        SettingError, match=r"choose from cifar10, .*, fashion_mnist, folder, imagenet_lt, .*, places_lt$"
    ):
        prepare_source("imagenet", PrepareOptions())
