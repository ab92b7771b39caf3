"""`bagmar train --data FOLDER` without --preset runs the `finetune` recipe (a `prepare folder` dataset's default):
here with a tiny random backbone; offline, without weights, it is one Error line naming `model.weights`. A setting
that needs a missing optional package is one Error line too."""

from __future__ import annotations

import json
import sys
import tomllib
from pathlib import Path

import pytest
from support.bad_input import assert_one_error_line
from support.image_trees import write_jpeg

from bagmar_cli.data import load_manifest

TINY = ["--set", "model.pretrained=false", "--set", "model.backbone=test_vit", "--set", "data.crop=160"]
RUN = ["--epochs", "1", "--batch-size", "4", "--device", "cpu", "--set", "data.num_workers=0"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """A user's ROOT/{train,val,test}/<class>/*.jpg, prepared with `bagmar prepare folder` (its defaults)."""
    from bagmar_cli.data.sources.folder import prepare_folder

    work = tmp_path_factory.mktemp("folder")
    for c, n in enumerate((5, 3, 2)):
        for split, count in (("train", n), ("val", 2), ("test", 2)):
            for i in range(count):
                write_jpeg(work / "tree" / split / f"class{c}" / f"{i}.jpg", seed=c)
    return prepare_folder(root=work / "tree", out=work / "ds")


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """The hub offline and no cached weights (as on a machine without network)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))


def with_default_preset(folder: Path, tmp_path: Path, name: str) -> Path:
    """A copy of the dataset's manifest (lists shared) naming `name` as its default preset."""
    copy = tmp_path / "ds"
    copy.mkdir()
    for item in folder.iterdir():
        (copy / item.name).symlink_to(item)
    manifest = json.loads((folder / "manifest.json").read_text())
    (copy / "manifest.json").unlink()
    (copy / "manifest.json").write_text(json.dumps(manifest | {"default_preset": name}))
    return copy


def test_a_prepared_folder_names_the_finetune_recipe(folder):
    assert load_manifest(folder).default_preset == "finetune"


def test_train_on_a_folder_runs_without_a_preset(cli, folder, tmp_path):
    outcome = cli("train", "--data", folder, *TINY, *RUN, "--out", tmp_path / "run")
    assert outcome.code == 0, outcome.err
    assert outcome.out.strip() == str(tmp_path / "run" / "best.safetensors")
    recorded = tomllib.loads((tmp_path / "run" / "config.toml").read_text())
    assert recorded["model"]["peft"] == "adaptformer" and recorded["model"]["head"] == "normed"
    assert recorded["loss"]["name"] == "bagmar" and recorded["optim"]["lr"] == 0.01


def test_offline_without_weights_the_recipe_is_one_error_line(cli, folder, tmp_path, offline):
    outcome = cli("train", "--data", folder, *RUN, "--out", tmp_path / "run")
    line = assert_one_error_line(
        outcome, 1, "model.pretrained = true needs timm's weights for 'vit_base_patch16_clip_224.openai'"
    )
    assert "set model.weights = FILE" in line
    assert not (tmp_path / "run").exists()


def test_a_manifest_of_an_earlier_bagmar_naming_folder_gets_the_finetune_recipe(cli, folder, tmp_path, offline):
    old = with_default_preset(folder, tmp_path, "folder")
    outcome = cli("train", "--data", old, *RUN, "--out", tmp_path / "run")
    assert_one_error_line(outcome, 1, "'vit_base_patch16_clip_224.openai'", "set model.weights = FILE")


def test_a_manifest_naming_a_preset_this_bagmar_lacks_is_one_error_line(cli, folder, tmp_path):
    other = with_default_preset(folder, tmp_path, "someone_elses_recipe")
    outcome = cli("train", "--data", other, *RUN, "--out", tmp_path / "run")
    assert_one_error_line(outcome, 2, "names the preset 'someone_elses_recipe', which this bagmar does not ship")
    assert not (tmp_path / "run").exists()


def test_lora_without_peft_is_one_error_line(cli, folder, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "peft", None)  # as when the optional package is not installed
    outcome = cli("train", "--data", folder, *TINY, *RUN, "--set", "model.peft=lora", "--out", tmp_path / "run")
    assert_one_error_line(
        outcome, 2, '`model.peft` = "lora" needs the optional package peft', "pip install 'bagmar[finetune]'"
    )
    assert not (tmp_path / "run").exists()


def test_the_folder_recipe_without_a_folder_asks_for_one(cli, tmp_path):
    outcome = cli("train", "--preset", "finetune", *RUN, "--out", tmp_path / "run")
    assert_one_error_line(outcome, 2, "no dataset: pass --data DIR")
