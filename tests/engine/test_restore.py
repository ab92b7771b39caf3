"""Rebuilding what a checkpoint describes: its model with its weights, and its dataset checked against it."""

import shutil

import pytest
import torch

from bagmar_cli.checkpoint import load_checkpoint
from bagmar_cli.data import load_manifest, prepare_dataset
from bagmar_cli.engine.restore import checkpoint_dataset, evaluation_split, model_from_checkpoint
from bagmar_cli.errors import CheckpointError, DatasetError


def test_the_model_carries_the_checkpoints_weights_in_eval_mode(digits_run):
    ckpt = load_checkpoint(digits_run)
    model = model_from_checkpoint(ckpt)
    assert not model.training
    assert torch.equal(model.state_dict()["head.weight"], ckpt.section("model")["head.weight"])


def test_weights_of_another_shape_are_a_checkpoint_error(digits_run):
    ckpt = load_checkpoint(digits_run)
    ckpt.tensors["model.head.weight"] = ckpt.tensors["model.head.weight"][:, :-1]
    with pytest.raises(CheckpointError, match="weights do not fit"):
        model_from_checkpoint(ckpt)


def test_the_recorded_dataset_or_the_given_one(digits_run, digits_data, tmp_path):
    ckpt = load_checkpoint(digits_run, tensors=False)
    assert checkpoint_dataset(ckpt)[0] == digits_data
    moved = shutil.copytree(digits_data, tmp_path / "moved")
    assert checkpoint_dataset(ckpt, moved)[0] == moved


def test_a_missing_dataset_says_to_pass_data(digits_run, tmp_path):
    ckpt = load_checkpoint(digits_run, tensors=False)
    gone = ckpt.meta.model_copy(
        update={"dataset": ckpt.meta.dataset.model_copy(update={"root": str(tmp_path / "gone")})}
    )
    ckpt.meta = gone
    with pytest.raises(DatasetError, match="pass `data` DIR"):
        checkpoint_dataset(ckpt)


def test_held_out_split_is_val_when_there_is_one(digits_data, tmp_path):
    assert evaluation_split(load_manifest(digits_data)) == "val"
    no_val = prepare_dataset("digits", imb=10, val_per_class=0, out=tmp_path / "no-val")
    assert evaluation_split(load_manifest(no_val)) == "test"
