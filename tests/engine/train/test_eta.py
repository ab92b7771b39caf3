"""The whole run's ETA in the epoch lines: every epoch left, and the stages after this one."""

from __future__ import annotations

import re

import pytest

from bagmar_cli.engine.train.eta import RunClock, duration

TINY = ["--set", "model.backbone=resnet8_cifar", "--device", "cpu"]


def test_every_epoch_line_gives_the_whole_runs_eta(cli, digits_data, tmp_path):
    outcome = cli("train", "--data", digits_data, "--out", tmp_path / "run", "--epochs", "2", *TINY)
    lines = [line for line in outcome.err.splitlines() if line.startswith("epoch ")]
    assert len(lines) == 2
    assert re.search(r"; run ETA \d+(s|m\d\ds|h\d\dm)$", lines[0]), lines[0]
    assert lines[1].endswith("; run done")


def test_the_eta_counts_every_epoch_left_and_the_stages_after_this_one():
    clock = RunClock(steps_per_epoch=10, epochs_left=4, later_steps=20)
    # one epoch (10 steps) took 5 s: 3 epochs (30 steps) and stage 2's 20 steps are left, at 0.5 s a step
    assert clock.seconds_left(3, now=clock.start + 5.0) == pytest.approx(25.0)
    assert [duration(s) for s in (42, 307, 10_920)] == ["42s", "5m07s", "3h02m"]
