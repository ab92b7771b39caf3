"""`torchrun` training on CPU (gloo): one checkpoint, written by rank 0, with the global batch's statistics."""

import subprocess
import sys
from pathlib import Path

import pytest

from bagmar_cli.checkpoint import load_checkpoint


# every sampler works under torchrun (each rank its strided share of the global order: tests/data/test_samplers.py)
@pytest.mark.parametrize("sampler", ["instance", pytest.param("class_aware", marks=pytest.mark.slow)])
def test_torchrun_two_processes(digits_data: Path, tmp_path: Path, sampler: str):
    out = tmp_path / "ddp"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "bagmar_cli",
        "train",
        "--data",
        str(digits_data),
        "--out",
        str(out),
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--set",
        "model.backbone=resnet20_cifar",
        "--set",
        f"data.sampler={sampler}",
        "--set",
        "optim.lr_batch=128",  # the preset's batch of 64 is not the lr's: said once, by rank 0
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines() == [str(out / "best.safetensors")]  # only rank 0 prints
    rule = "optim.lr 0.1 is stated for a global batch of 128; this run's is 64 (2 processes x 32): keeping it"
    assert [line for line in done.stderr.splitlines() if "stated for a global batch" in line] == [
        f'{rule} (optim.lr_scaling = "keep"; "linear" would give 0.05)'
    ]
    ckpt = load_checkpoint(out / "last.safetensors")
    theta, phi = ckpt.section("loss")["theta"], ckpt.section("loss")["phi"]
    assert theta.sum() > 0 and theta.shape == phi.shape == (10,)
    assert not (out / ".lock").exists()


def test_torchrun_trains_both_stages_in_one_process_group(digits_data: Path, tmp_path: Path):
    """Two stages under torchrun: one process group for both, every rank starts stage 2 from stage 1's backbone."""
    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "bagmar_cli", "train", "--data", str(digits_data), "--out", str(out)]
    command += ["--epochs", "1", "--device", "cpu", "--nproc-per-node", "2", "--set", "model.backbone=resnet20_cifar"]
    for item in ("stage2.train.epochs=1", "stage2.model.freeze=backbone", "stage2.data.sampler=class_aware"):
        command += ["--set", item]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines() == [str(out / "stage2" / "best.safetensors")]
    start = load_checkpoint(out / "stage1" / "best.safetensors").section("model.backbone")
    end = load_checkpoint(out / "stage2" / "last.safetensors").section("model.backbone")
    assert start.keys() == end.keys() and all((start[k] == end[k]).all() for k in start)
    assert not any(p.name == ".lock" for p in out.rglob("*"))
