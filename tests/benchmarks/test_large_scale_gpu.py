"""benchmarks/large_scale_gpu.py: the measured step on a device (here the CPU, a tiny backbone), its table, and a
clear refusal without CUDA."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
SCRIPT = BENCHMARKS / "large_scale_gpu.py"


@pytest.fixture(scope="module")
def gpu_module():
    sys.path.insert(0, str(BENCHMARKS))  # the script imports large_scale_estimate from its own folder
    try:
        import large_scale_gpu

        yield large_scale_gpu
    finally:
        sys.path.remove(str(BENCHMARKS))


def test_a_frozen_backbone_trains_faster_than_the_whole_network(gpu_module) -> None:
    rate = {
        mode: gpu_module.device_rate(
            "resnet10t", 10, mode, device=torch.device("cpu"), batch=8, steps=2, warmup=1, size=64
        )
        for mode in ("none", "backbone")
    }
    assert 0 < rate["none"] < rate["backbone"]  # no backward through a frozen backbone


def test_the_table_shows_the_measured_rate_beside_the_estimate(gpu_module) -> None:
    row = {"backbone": "resnet50", "classes": 1000, "freeze": "none", "size": 224, "batch": 128}
    row |= {"measured_images_per_s": 2000.4, "estimated_images_per_s": {"A100": 2470.0, "H100": 4058.1}}
    lines = gpu_module.render([row], "NVIDIA H100")
    assert lines[0].startswith("| backbone | classes | freeze | px | batch | measured img/s (NVIDIA H100)")
    assert lines[2] == "| resnet50 | 1000 | none | 224 | 128 | 2000 | 2470 / 4058 |"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_without_cuda_it_is_one_error_line(gpu_module, monkeypatch, capsys) -> None:
    monkeypatch.setattr(sys, "argv", [str(SCRIPT)])
    with pytest.raises(SystemExit) as exit_:
        gpu_module.main()
    captured = capsys.readouterr()
    assert exit_.value.code == 1 and captured.out == ""
    assert captured.err == f"Error: --device cuda: no CUDA device visible to torch {torch.__version__}\n"
