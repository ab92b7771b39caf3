"""The large-scale estimate's pieces on a tiny backbone: counted FLOPs, the corrected grouped-conv backward, the
data path, the estimate's arithmetic and the markdown it prints."""

from __future__ import annotations

import sys
from dataclasses import asdict
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


def test_the_cpu_attention_kernel_is_counted_as_flash_attention(estimate: ModuleType) -> None:
    q, k, v = (torch.randn(1, 2, 5, 4, requires_grad=True) for _ in range(3))  # batch 1, 2 heads, 5 tokens, dim 4
    counted = {}
    for name, mapping in (("torch", {}), ("estimate", estimate.COUNTING)):
        with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
            nn.functional.scaled_dot_product_attention(q, k, v).sum().backward()
        counted[name] = counter.get_total_flops()
    one_matmul = 2 * 1 * 2 * 5 * 5 * 4  # (5 x 4) @ (4 x 5) per head, 2 FLOPs per multiply-add
    assert counted["torch"] == 0  # torch has no formula for the CPU kernel: ViTs would lose their attention
    # forward: Q K^T and P V; flash's backward: Q K^T again, dV, dP, dQ, dK
    assert counted["estimate"] == (2 + 5) * one_matmul


def test_an_adapter_stage_counts_no_base_weight_gradients_and_estimates_its_memory(estimate: ModuleType) -> None:
    full = estimate.measure_model("test_vit", 10, "none", size=160, batch=2, steps=0)
    adapted = estimate.measure_model(
        "test_vit", 10, "none", size=160, batch=2, steps=0, peft="adaptformer", memory_batch=128
    )
    assert adapted["trainable_parameters"] < 0.05 * adapted["parameters"]
    # the backward still runs through every block (the adapters are in each) but skips the base's weight gradients
    assert 0.5 * full["gflops_per_image"] < adapted["gflops_per_image"] < full["gflops_per_image"]
    memory = adapted["memory"]
    assert memory["saved_mb_per_image"] > 0 and memory["batch"] == 128
    assert memory["activations_gb"] == pytest.approx(
        (memory["saved_mb_per_image"] * 128 + memory["saved_mb_per_batch"]) / 1e3
    )
    assert memory["weights_gb"] == pytest.approx(4 * adapted["parameters"] / 1e9)
    assert memory["gradients_and_momentum_gb"] == pytest.approx(8 * adapted["trainable_parameters"] / 1e9)
    parts = memory["weights_gb"] + memory["gradients_and_momentum_gb"] + memory["activations_gb"]
    assert memory["total_gib"] == pytest.approx(parts * 1e9 / 2**30)
    assert "memory" not in full


def test_a_fine_tuning_stage_is_estimated_with_its_own_loader_rate_and_memory(estimate: ModuleType) -> None:
    stage = estimate.Stage("fine-tune", "none", "adaptformer")
    preset = estimate.Preset("tiny_clip", "test_vit", 10, 1_000, (64, 48), (stage,), batch=128)
    model = {"gflops_per_image": 2.0, "memory": {"total_gib": 9.5}}
    rates = {"worker": {"images_per_cpu_s": 100.0}, "worker_finetune": {"images_per_cpu_s": 250.0}}
    calibration = estimate.Calibration(24e9)
    (row,) = estimate.estimate([preset], {("test_vit", 10, "none", "adaptformer"): model}, {(64, 48): rates},
                               calibration, [8])  # fmt: skip
    assert row["loader_s"]["8"] == pytest.approx(1_000 / (250.0 * 8))
    assert row["gpu_memory_gib"] == 9.5 and row["batch"] == 128
    report = {"date": "d", "torch": "t", "timm": "m", "cpu": "c", "threads": 1, "omp_num_threads": "1", "cores": 2,
              "load_average_before": [0.0], "load_average_after": [0.0], "workers": [8], "size": 224,
              "calibration": asdict(calibration), "models": [], "data_path": [], "estimate": [row]}  # fmt: skip
    (line,) = [line for line in estimate.render(report) if line.startswith("| tiny_clip |")]
    assert line.endswith("| 9.5 (128) |")
