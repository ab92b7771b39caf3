"""benchmarks/gpu_check.sh: a clear refusal without CUDA, and its CPU dry run end to end (slow)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.sh"
ENV = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_without_cuda_it_stops_with_one_error_line_before_installing(tmp_path):
    done = subprocess.run(
        ["bash", str(SCRIPT), "--work", str(tmp_path / "work")], capture_output=True, text=True, env=ENV, check=False
    )
    assert done.returncode == 1
    assert [line for line in done.stderr.splitlines() if line.startswith("Error:")] == [
        line for line in done.stderr.splitlines() if "no CUDA device visible to torch" in line
    ]
    assert done.stderr.count("Error:") == 1 and "install" not in done.stderr
    assert not (tmp_path / "work").exists()


def test_an_unknown_device_is_a_usage_error():
    done = subprocess.run(
        ["bash", str(SCRIPT), "--device", "tpu"], capture_output=True, text=True, env=ENV, check=False
    )
    assert done.returncode == 2 and done.stderr.strip() == "Error: --device tpu: choose cuda or cpu"


@pytest.mark.slow  # several minutes on 2 shared cores: two 1-epoch CIFAR-100-LT trainings
def test_cpu_dry_run_measures_and_trains(tmp_path):
    args = ["bash", str(SCRIPT), "--device", "cpu", "--steps", "2", "--epochs", "1", "--no-install"]
    done = subprocess.run(
        [*args, "--work", str(tmp_path)], capture_output=True, text=True, env=ENV, timeout=1500, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    runs = [json.loads(line) for line in done.stdout.splitlines() if line.startswith('{"train"')]
    assert [run["train"] for run in runs] == ["default", "bf16-cl"]
    assert all(run["images_per_s_last_epoch"] > 0 and run["projected_200_epochs_training_min"] > 0 for run in runs)
    large = (tmp_path / "large_scale_gpu.md").read_text().splitlines()
    assert len([line for line in large if line.startswith("| res")]) == 8  # 3 backbones x the presets' modes
    clip = [line for line in large if line.startswith("| vit_base_patch16_clip_224.openai")]
    assert len(clip) == 3 and all("adaptformer" in line and "| 224 |" in line for line in clip)  # 3 heads, 224 px
    assert json.loads(large[-1])["device"] == "cpu"
    tuned = json.loads((tmp_path / "finetune_gpu.md").read_text().splitlines()[-1])
    assert tuned["device"] == "cpu" and tuned["backbone"] == "test_vit"
    assert {"full", "lora", "adaptformer"} <= {row["variant"] for row in tuned["rows"]}
    assert all(row["images_per_s"] > 0 and row["epoch_min"] > 0 for row in tuned["rows"])
    fp32 = json.loads((tmp_path / "throughput_fp32.json").read_text())
    assert len(fp32["pipelines"]) == 5 and fp32["device"] == "cpu"
    assert (
        sum(json.loads((tmp_path / "cifar100-lt" / "manifest.json").read_text())["splits"]["train"]["counts"]) == 10847
    )
