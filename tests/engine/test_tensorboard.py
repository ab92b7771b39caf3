"""TensorBoard event files beside metrics.jsonl and the τ curve of tune-tau, read back with tensorboard's
EventAccumulator (the `tensorboard` extra, which the `test` extra installs)."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.training import raise_at_call, with_hooks

from bagmar_cli.engine.train.metrics import read_records

accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")

TINY = ["--set", "model.backbone=resnet8_cifar", "--device", "cpu"]


def scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series of the event files in `folder`: tag -> [(step, value)]."""
    events = accumulator.EventAccumulator(str(folder), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_training_and_tune_tau_write_event_files_with_the_numbers_of_metrics_jsonl(cli, digits_data, tmp_path):
    run = tmp_path / "run"
    outcome = cli("train", "--data", digits_data, "--out", run, "--epochs", "2", *TINY)
    assert outcome.code == 0, outcome.err
    records = read_records(run / "metrics.jsonl")
    assert [(r.epoch, r.split) for r in records] == [(1, "val"), (2, "val")]
    logged = scalars(run)
    for key in ("loss", "lr", "images_per_s"):
        assert logged[f"train/{key}"] == [(r.epoch, pytest.approx(getattr(r, key))) for r in records]
    for key in ("top1", "many", "medium", "few"):
        assert logged[f"val/{key}"] == [(r.epoch, pytest.approx(getattr(r.scores, key))) for r in records]
    tuned = cli("tune-tau", run / "best.safetensors", "--grid", "0:1:0.5", "--json", "--device", "cpu")
    assert tuned.code == 0, tuned.err
    curve = scalars(run)["tau/best/pn/top1"]
    assert curve == [(round(100 * row["tau"]), pytest.approx(row["top1"])) for row in tuned.json()["grid"]]


def test_a_resumed_run_hides_the_points_of_the_epochs_it_trains_again(cli, digits_data, tmp_path, monkeypatch):
    run = tmp_path / "run"
    with_hooks(monkeypatch, on_epoch_logged=raise_at_call(2))  # epoch 2 is logged, not checkpointed: trained again
    assert cli("train", "--data", digits_data, "--out", run, "--epochs", "3", *TINY).code == 130
    assert [step for step, _ in scalars(run)["train/loss"]] == [1, 2]
    monkeypatch.undo()
    assert cli("train", "--out", run, "--resume").code == 0
    records = read_records(run / "metrics.jsonl")
    assert scalars(run)["train/loss"] == [(r.epoch, pytest.approx(r.loss)) for r in records]
    assert [r.epoch for r in records] == [1, 2, 3]


def test_without_the_package_no_event_file_is_written(cli, digits_data, tmp_path, monkeypatch):
    monkeypatch.setattr("bagmar_cli.engine.tensorboard.available", lambda: False)
    run = tmp_path / "run"
    assert cli("train", "--data", digits_data, "--out", run, "--epochs", "1", *TINY).code == 0
    assert not list(run.glob("events.out.tfevents.*")) and (run / "metrics.jsonl").exists()
