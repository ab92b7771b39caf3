"""benchmarks/fmnist_stage2.py end to end on the real Fashion-MNIST files at one epoch per stage: every stage-2 run
keeps its stage-1 backbone bit for bit, the table names each method, and a second run reads the first one's back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bagmar_cli.data.sources.fashion_mnist import SYSTEM_DIR

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "fmnist_stage2.py"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not SYSTEM_DIR.is_dir(), reason=f"{SYSTEM_DIR} is absent (apt-get install dataset-fashion-mnist)"
    ),
]


def _run(out: Path) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, str(SCRIPT), "--out", str(out), "--seeds", "0", "--epochs", "1", "--stage2-epochs", "1"]
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    return subprocess.run([*args, "--jobs", "1"], capture_output=True, text=True, timeout=900, check=False, env=env)


def test_stage2_benchmark_keeps_each_backbone_and_resumes(tmp_path: Path) -> None:
    first = _run(tmp_path)
    assert first.returncode == 0, first.stderr
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["summary"]["backbone_unchanged"] == [True, True]  # stage 2 with BaGMar and with CE, seed 0
    names = sorted(run["name"] for run in saved["runs"])
    assert names == [
        "imb100-e1-bagmar-s0",
        "imb100-e1-ce-s0",
        "imb100-e1-ce-s0-stage2-bagmar-e1",
        "imb100-e1-ce-s0-stage2-ce-e1",
    ]
    for label in ("CE, one stage", "BaGMar, one stage", "CE → stage 2, BaGMar", "CE → stage 2, CE (cRT)"):
        assert f"| {label} | plain |" in first.stdout
    assert first.stdout == (tmp_path / "results.md").read_text() + "\n"

    again = _run(tmp_path)  # every run is read back: the same table
    assert again.returncode == 0, again.stderr
    assert again.stdout == first.stdout and "run directory" not in again.stderr
