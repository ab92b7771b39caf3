"""The large-scale estimate's pieces on a tiny backbone: counted FLOPs, the corrected grouped-conv backward, the
data path, the estimate's arithmetic and the markdown it prints."""

from __future__ import annotations

import sys
from types import ModuleType

import pytest
import torch
from support.scripts import load_benchmark
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@pytest.fixture(scope="module")
def estimate() -> ModuleType:
    return load_benchmark("large_scale_estimate")


def test_stage_two_counts_far_fewer_flops_than_full_training(estimate: ModuleType) -> None:
    full = estimate.measure_model("resnet10t", 10, "none", size=32, batch=2, steps=1)
    head = estimate.measure_model("resnet10t", 10, "backbone", size=32, batch=2, steps=1)
    last = estimate.measure_model("resnet10t", 10, "all_but_last_stage", size=32, batch=2, steps=0)
    # a frozen backbone runs forward only: about a third of forward + backward, and the head's backward is tiny
    assert head["gflops_per_image"] < 0.4 * full["gflops_per_image"]
    assert head["gflops_per_image"] < last["gflops_per_image"] < full["gflops_per_image"]
    assert head["trainable_parameters"] == 512 * 10 + 10  # resnet10t's 512 features -> 10 logits
    assert full["trainable_parameters"] == full["parameters"]
    assert full["cpu_images_per_s"] > 0 and full["cpu_gflops_per_s"] > 0
    assert "cpu_images_per_s" not in last


def test_grouped_conv_backward_counts_what_the_forward_does_per_gradient(estimate: ModuleType) -> None:
    conv = nn.Conv2d(64, 64, 3, padding=1, groups=32)
    x = torch.randn(1, 64, 8, 8, requires_grad=True)
    forward = 2 * 64 * (64 // 32) * 9 * 8 * 8  # multiply-adds of the grouped conv, x2
    with FlopCounterMode(display=False, custom_mapping=estimate.COUNTING) as counter:
        conv(x).sum().backward()
    assert counter.get_total_flops() == 3 * forward  # forward, input gradient, weight gradient


def test_run_estimates_and_renders_every_stage_as_markdown(estimate: ModuleType) -> None:
    stages = (estimate.Stage("stage 1 (all)", "none"), estimate.Stage("stage 2 (head)", "backbone"))
    preset = estimate.Preset("tiny_lt", "resnet10t", 10, 12_000, (64, 48), stages)
    report = estimate.run([preset], files=2, rounds=1, batch=2, steps=1, workers=[8, 16], size=32)
    assert report["threads"] == torch.get_num_threads()
    first, second = report["estimate"]
    assert first["gflops_per_image"] > 2 * second["gflops_per_image"]
    data = report["data_path"][0]
    assert data["mean_file_kb"] > 0 and data["with_randaugment"]["images_per_cpu_s"] > 0
    rate = data["worker"]["images_per_cpu_s"]
    assert first["loader_s"]["8"] == pytest.approx(12_000 / (8 * rate))
    assert first["loader_s"]["16"] == pytest.approx(first["loader_s"]["8"] / 2)
    calibration = report["calibration"]
    # ResNet-50 at 224 px: about 3 x 4.1 G multiply-adds x 2 (forward and two backward convolutions)
    assert 23e9 < calibration["resnet50_flops_per_image"] < 26e9
    assert first["gpu_s"]["A100"] == pytest.approx(
        12_000 * first["gflops_per_image"] * 1e9 / calibration["a100_flops_per_s"]
    )
    assert first["gpu_s"]["H100"] < first["gpu_s"]["A100"]
    expected = max(first["gpu_s"]["A100"], first["loader_s"]["8"]) / 60
    assert first["wall_min"]["A100"]["8"] == pytest.approx(expected)
    lines = estimate.render(report)
    table = [line for line in lines if line.startswith("| tiny_lt |")]
    assert len(table) == 2 and "12,000" in table[0] and "stage 2 (head)" in table[1]
    assert f"**torch threads {report['threads']}**" in lines[2]
    assert "every GPU and wall time below is an estimate" in lines[2]


@pytest.mark.parametrize("args", [["--threads", "0"], ["--workers", "8,x"], ["--steps", "-1"]])
def test_a_bad_option_is_a_usage_error(
    estimate: ModuleType, args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", ["large_scale_estimate.py", *args])
    with pytest.raises(SystemExit) as exit_:
        estimate.main()
    assert exit_.value.code == 2
    assert args[0] in capsys.readouterr().err
