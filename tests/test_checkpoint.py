"""Checkpoint I/O: safetensors with JSON metadata, atomic writes, clear refusals."""

import errno
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from bagmar_cli import files
from bagmar_cli.checkpoint import FORMAT_VERSION, load_checkpoint, save_checkpoint, update_metadata
from bagmar_cli.checkpoint_meta import CheckpointMeta
from bagmar_cli.errors import CheckpointError
from bagmar_cli.settings import Settings

META = CheckpointMeta(
    settings=Settings(),
    model={"backbone": "resnet8_cifar", "head": "linear", "num_classes": 2, "input_size": [1, 8, 8]}
    | {"mean": [0.5], "std": [0.25]},
    classes=["a", "b"],
    train_counts=[5, 1],
    epoch=3,
    metrics={"nested": {"x": [1, 2]}},
)


def _write(path: Path) -> Path:
    tensors = {"model.head.weight": torch.arange(6.0).reshape(2, 3), "loss.theta": torch.ones(3, dtype=torch.float64)}
    return save_checkpoint(path, tensors, META)


def test_metadata_and_tensors_round_trip(tmp_path: Path):
    ckpt = load_checkpoint(_write(tmp_path / "c.safetensors"))
    assert ckpt.meta.epoch == 3 and ckpt.meta.classes == ["a", "b"] and ckpt.meta.metrics == {"nested": {"x": [1, 2]}}
    assert ckpt.meta.format == "bagmar-checkpoint" and ckpt.meta.format_version == FORMAT_VERSION
    assert ckpt.meta.model == META.model and ckpt.meta.settings == META.settings and ckpt.meta.bagmar_version
    assert torch.equal(ckpt.section("model")["head.weight"], torch.arange(6.0).reshape(2, 3))
    assert ckpt.section("loss")["theta"].dtype == torch.float64


def test_update_metadata_keeps_tensor_bytes(tmp_path: Path):
    path = _write(tmp_path / "c.safetensors")
    before = load_checkpoint(path).tensors
    after = update_metadata(path, {"posthoc": {"method": "pn", "tau": 1.5}})
    assert after.meta.posthoc.tau == 1.5 and after.meta.epoch == 3
    for key, value in before.items():
        assert value.numpy().tobytes() == after.tensors[key].numpy().tobytes()


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "not a safetensors checkpoint"),
        (b"\x00" * 3, "not a safetensors checkpoint"),
        (bytes(range(256)) * 10, "not a valid safetensors file"),
        (pickle.dumps({"a": 1}), "not a valid safetensors file"),
    ],
    ids=["empty", "tiny", "random-bytes", "pickle"],
)
def test_refuses_non_checkpoints(tmp_path: Path, content: bytes, message: str):
    path = tmp_path / "x.safetensors"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


def test_refuses_truncated(tmp_path: Path):
    path = _write(tmp_path / "c.safetensors")
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def test_refuses_foreign_safetensors(tmp_path: Path):
    path = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(CheckpointError, match="not a bagmar checkpoint"):
        load_checkpoint(path)


def test_refuses_newer_format(tmp_path: Path):
    path = tmp_path / "new.safetensors"
    save_file({"w": torch.zeros(2)}, str(path), metadata={"format": '"bagmar-checkpoint"', "format_version": "99"})
    with pytest.raises(CheckpointError, match="format version 99"):
        load_checkpoint(path)


def test_missing_file(tmp_path: Path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.safetensors")


def test_full_disk_keeps_previous_checkpoint(tmp_path: Path, monkeypatch):
    path = _write(tmp_path / "c.safetensors")
    original = path.read_bytes()

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", full)
    with pytest.raises(OSError):
        save_checkpoint(path, {"model.head.weight": torch.zeros(2, 3)}, META)
    assert path.read_bytes() == original
    assert [p.name for p in tmp_path.iterdir()] == ["c.safetensors"]  # no temporary left behind
