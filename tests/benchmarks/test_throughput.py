"""The throughput benchmark runs end to end: five pipelines, JSON on stdout with the thread count, a table on stderr."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from support.scripts import load_benchmark

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "throughput.py"


@pytest.mark.slow
def test_throughput_reports_five_pipelines_as_json_and_a_table() -> None:
    args = [sys.executable, str(SCRIPT), "--threads", "1", "--steps", "1", "--warmup", "1", "--workers", "1"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["threads"] == 1
    assert report["batch"] == 64
    rates = [row["images_per_s"] for row in report["pipelines"]]
    assert len(rates) == 5
    assert all(rate > 0 for rate in rates)
    assert all(row["input_alone_cpu_ms_per_image"] > 0 for row in report["pipelines"])
    assert "--threads 1" in done.stderr
    names = [row["name"] for row in report["pipelines"]]
    assert names[3:] == ["bagmar batch augmentation", "bagmar now (fp32)"]  # the table may wrap them on stderr


@pytest.mark.slow
def test_throughput_runs_bagmars_step_in_bf16_channels_last() -> None:
    args = [sys.executable, str(SCRIPT), "--threads", "1", "--steps", "1", "--warmup", "1", "--only", "1,5"]
    done = subprocess.run(
        [*args, "--precision", "bf16", "--channels-last"], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert [row["name"] for row in report["pipelines"]] == [
        "bare step (no augmentation, CE)",
        "bagmar now (bf16, channels-last)",
    ]
    assert report["precision"] == "bf16" and report["channels_last"] and not report["compile"]


def test_throughput_rejects_zero_steps_with_a_usage_error(monkeypatch, capsys) -> None:
    throughput = load_benchmark("throughput")  # in this process: a subprocess would spend seconds importing torch
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), "--steps", "0"])
    with pytest.raises(SystemExit) as exit_:
        throughput.main()
    assert exit_.value.code == 2
    assert "--steps" in capsys.readouterr().err
