"""The throughput benchmark runs end to end: four pipelines, JSON on stdout with the thread count, a table on stderr."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "throughput.py"


@pytest.mark.slow
def test_throughput_reports_four_pipelines_as_json_and_a_table() -> None:
    args = [sys.executable, str(SCRIPT), "--threads", "1", "--steps", "1", "--warmup", "1", "--workers", "1"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["threads"] == 1
    assert report["batch"] == 64
    rates = [row["images_per_s"] for row in report["pipelines"]]
    assert len(rates) == 4
    assert all(rate > 0 for rate in rates)
    assert all(row["input_alone_cpu_ms_per_image"] > 0 for row in report["pipelines"])
    assert "--threads 1" in done.stderr
    assert "bagmar batch augmentation" in done.stderr


def test_throughput_rejects_zero_steps_with_a_usage_error() -> None:
    done = subprocess.run([sys.executable, str(SCRIPT), "--steps", "0"], capture_output=True, text=True, check=False)
    assert done.returncode == 2
    assert "--steps" in done.stderr
    assert "Traceback" not in done.stderr
