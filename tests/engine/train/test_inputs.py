"""engine/train/inputs.py: what a run's network sees, from the backbone's data config, a checkpoint's record, or
the dataset."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.image_trees import write_jpeg

from bagmar_cli.checkpoint import load_checkpoint
from bagmar_cli.data import load_manifest
from bagmar_cli.data.sources.folder import prepare_folder
from bagmar_cli.engine.train.inputs import run_inputs
from bagmar_cli.settings import load_settings


@pytest.fixture(scope="module")
def large_images(tmp_path_factory) -> Path:
    """A folder of 96-pixel JPEGs (not small: evaluated with a resize and a centre crop)."""
    tree = tmp_path_factory.mktemp("tree")
    for c in range(2):
        for split in ("train", "val", "test"):
            for i in range(2):
                write_jpeg(tree / split / f"class{c}" / f"{i}.jpg", seed=c, size=(96, 96))
    return prepare_folder(root=tree, out=tmp_path_factory.mktemp("ds") / "ds")


def _settings(*sets: str):
    return load_settings("digits_lt", overrides=list(sets))


def test_a_pretrained_backbone_brings_its_size_resize_interpolation_and_normalisation(large_images, tmp_path):
    manifest = load_manifest(large_images)
    inputs = run_inputs(_settings("model.backbone=test_vit", f"model.weights={tmp_path / 'w.safetensors'}"), manifest)
    # test_vit's cfg: 160 pixels, crop fraction 0.95, bicubic, mean and std 0.5
    assert inputs.size == (160, 160) and inputs.mean == inputs.std == [0.5, 0.5, 0.5]
    assert inputs.preprocess is not None
    assert (inputs.preprocess.resize, inputs.preprocess.crop, inputs.preprocess.interpolation) == (168, 160, "bicubic")
    assert inputs.preprocess.mean == [0.5, 0.5, 0.5]


def test_data_crop_overrides_the_size_but_not_the_normalisation(large_images, tmp_path):
    manifest = load_manifest(large_images)
    sets = ("model.backbone=test_convnext", f"model.weights={tmp_path / 'w.safetensors'}", "data.crop=112")
    inputs = run_inputs(_settings(*sets), manifest)
    assert inputs.size == (112, 112) and inputs.mean == [0.5, 0.5, 0.5]
    assert inputs.preprocess is not None
    assert (inputs.preprocess.resize, inputs.preprocess.crop) == (round(256 * 112 / 224), 112)  # the dataset's, scaled
    assert inputs.preprocess.interpolation == "bicubic"


def test_without_pretrained_weights_the_dataset_decides_as_before(large_images):
    manifest = load_manifest(large_images)
    inputs = run_inputs(_settings("model.backbone=test_convnext"), manifest)
    assert inputs.mean == list(manifest.mean) and inputs.size == (224, 224)
    assert inputs.preprocess is not None and inputs.preprocess.interpolation == "bilinear"


def test_a_tensor_dataset_takes_only_the_normalisation_averaged_for_grey_images(digits_data, tmp_path):
    manifest = load_manifest(digits_data)
    inputs = run_inputs(
        _settings("model.backbone=test_convnext", f"model.weights={tmp_path / 'w.safetensors'}"), manifest
    )
    assert inputs.preprocess is None and inputs.size == (8, 8) and inputs.mean == inputs.std == [0.5]


def test_a_bagmar_checkpoint_as_weights_brings_what_it_was_trained_on(digits_data, digits_run):
    """Not the backbone's cfg (test_convnext's says 0.5): what the checkpoint recorded (the digits' statistics)."""
    spec = load_checkpoint(digits_run, tensors=False).meta.model
    settings = _settings("model.backbone=test_convnext", f"model.weights={digits_run}")
    inputs = run_inputs(settings, load_manifest(digits_data))
    assert (inputs.mean, inputs.std, inputs.preprocess) == (spec.mean, spec.std, None)
    assert inputs.mean != [0.5]
