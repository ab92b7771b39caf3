"""Validation shared across ranks: each of 2 gloo processes runs a strided shard, the report is the whole split's."""

import json
import subprocess
import sys
from pathlib import Path

KEYS = ("top1", "top5", "many", "medium", "few", "macro", "n")


def test_two_processes_report_what_one_process_reports_on_the_same_weights(cli, digits_data: Path, tmp_path: Path):
    out = tmp_path / "ddp"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "bagmar_cli",
        "train", "--data", str(digits_data), "--out", str(out), "--epochs", "1", "--device", "cpu",
        "--set", "model.backbone=resnet8_cifar",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    recorded = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])["val"]
    outcome = cli("eval", out / "last.safetensors", "--split", "val", "--json", "--no-plots", "--device", "cpu")
    assert outcome.code == 0, outcome.err
    single = outcome.json()
    assert recorded["n"] == 100  # the whole val split: two shards of 50, no padding duplicates
    assert {k: recorded[k] for k in KEYS} == {k: single[k] for k in KEYS}
