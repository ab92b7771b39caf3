"""`bagmar train` with optim.lr_batch: the rule for the lr is said once on stderr, and the run trains at that lr."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bagmar_cli.settings import read_settings_file

RULES = {
    "linear": (0.05, 'scaled linearly to 0.05 (optim.lr_scaling = "linear")'),
    "keep": (0.2, 'keeping it (optim.lr_scaling = "keep"; "linear" would give 0.05)'),
}


@pytest.mark.parametrize("scaling", RULES)
def test_train_says_the_lr_rule_on_stderr_and_trains_at_that_lr(cli, digits_data: Path, tmp_path: Path, scaling):
    run = tmp_path / "run"
    sets = ["model.backbone=resnet8_cifar", "optim.lr=0.2", "optim.lr_batch=128", f"optim.lr_scaling={scaling}"]
    sets += ["schedule.name=constant", "schedule.warmup_epochs=0"]  # every step at the effective lr
    outcome = cli(
        "train", "--data", digits_data, "--out", run, "--epochs", "1", "--batch-size", "32", "--device", "cpu",
        *(arg for item in sets for arg in ("--set", item)),
    )  # fmt: skip
    assert outcome.code == 0, outcome.err
    assert outcome.out == f"{run / 'best.safetensors'}\n"  # the checkpoint, and nothing else
    lr, rule = RULES[scaling]
    said = [line for line in outcome.err.splitlines() if line.startswith("optim.lr")]
    assert said == [f"optim.lr 0.2 is stated for a global batch of 128; this run's is 32: {rule}"]
    (record,) = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert record["lr"] == pytest.approx(lr)
    recorded = read_settings_file(run / "config.toml").optim
    assert (recorded.lr, recorded.lr_batch, recorded.lr_scaling) == (0.2, 128, scaling)  # as stated, for a resume


def test_train_says_nothing_of_the_rule_without_lr_batch(cli, digits_data: Path, tmp_path: Path):
    run = tmp_path / "run"
    outcome = cli(
        "train", "--data", digits_data, "--out", run, "--epochs", "1", "--batch-size", "32", "--device", "cpu",
        "--set", "model.backbone=resnet8_cifar", "--set", "optim.lr_scaling=linear",
    )  # fmt: skip
    assert outcome.code == 0, outcome.err
    assert "stated for a global batch" not in outcome.err
