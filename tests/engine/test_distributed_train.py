"""`torchrun` training on CPU (gloo): one checkpoint, written by rank 0, with the global batch's statistics."""

import subprocess
import sys
from pathlib import Path

from bagmar_cli.checkpoint import load_checkpoint


def test_torchrun_two_processes(digits_data: Path, tmp_path: Path):
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
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines() == [str(out / "best.safetensors")]  # only rank 0 prints
    ckpt = load_checkpoint(out / "last.safetensors")
    theta, phi = ckpt.section("loss")["theta"], ckpt.section("loss")["phi"]
    assert theta.sum() > 0 and theta.shape == phi.shape == (10,)
    assert not (out / ".lock").exists()
