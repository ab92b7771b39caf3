"""The loader benchmark runs end to end: four pipelines per worker count, JSON on stdout, a table on stderr."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "loader.py"


@pytest.mark.slow
def test_loader_benchmark_reports_each_pipeline_per_worker_count() -> None:
    args = [sys.executable, str(SCRIPT), "--files", "8", "--rounds", "1", "--workers", "0,1", "--batch", "4"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["threads"] == 1 and report["size"] == [500, 375] and report["load_average_before"]
    rows = {(row["pipeline"], row["workers"]): row for row in report["rows"]}
    assert set(rows) == {(p, w) for p in ("authors", "bagmar no-draft", "bagmar", "bagmar uint8") for w in (0, 1)}
    assert all(row["images_per_s"] > 0 and row["images_per_cpu_s"] > 0 for row in rows.values())
    assert rows[("authors", 1)]["per_core_vs_authors"] == 1.0
    assert "--threads 1" in done.stderr and "bagmar no-draft" in done.stderr
