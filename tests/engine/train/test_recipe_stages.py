"""Two-stage training: one `train` runs both stages into RUN/stage1 and RUN/stage2, resumes at either, and stage 2
re-trains the classifier on stage 1's backbone (or on a backbone given with --stage1, skipping stage 1)."""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

import pytest
import torch
from support.training import raise_at_call, with_hooks

from bagmar_cli.checkpoint import load_checkpoint

# stage 1: two epochs of the digits recipe (tiny net); stage 2: the decoupling protocol's classifier re-training
STAGE1 = ["--device", "cpu", "--batch-size", "32", "--epochs", "2", "--set", "model.backbone=resnet20_cifar"]
STAGE1 += ["--set", "loss.name=ce"]
STAGE2 = [
    "stage2.train.epochs=2",
    "stage2.model.freeze=backbone",
    "stage2.data.sampler=class_aware",
    "stage2.loss.name=bagmar",
    "stage2.optim.lr=0.05",
]
TWO_STAGES = [*STAGE1, *(arg for item in STAGE2 for arg in ("--set", item))]


def two_stage_args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--data", str(data), "--out", str(out), "--preset", "digits_lt", *TWO_STAGES, *extra]


@pytest.fixture(scope="module")
def whole(digits_data: Path, tmp_path_factory) -> Path:
    """An uninterrupted two-stage run directory."""
    from bagmar_cli.cli import main

    run = tmp_path_factory.mktemp("whole") / "run"
    assert main(two_stage_args(digits_data, run)) == 0
    return run


def weights(path: Path, section: str = "model") -> dict[str, torch.Tensor]:
    return load_checkpoint(path).section(section)


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_one_command_trains_both_stages_keeps_each_and_prints_stage_2s_checkpoint(cli, digits_data, tmp_path):
    run = tmp_path / "run"
    outcome = cli(*two_stage_args(digits_data, run))
    assert outcome.code == 0, outcome.err
    assert outcome.out == f"{run / 'stage2' / 'best.safetensors'}\n"
    for stage in ("stage1", "stage2"):
        names = {p.name for p in (run / stage).iterdir()}
        assert {"best.safetensors", "last.safetensors", "metrics.jsonl", "config.toml"} <= names
        assert len((run / stage / "metrics.jsonl").read_text().splitlines()) == 2
    recorded = tomllib.loads((run / "config.toml").read_text())
    assert recorded["stage2"]["loss"] == {"name": "bagmar"} and recorded["loss"]["name"] == "ce"
    stage2 = load_checkpoint(run / "stage2" / "last.safetensors").meta.settings
    assert stage2.stage2 is None and stage2.loss.name == "bagmar" and stage2.model.freeze == "backbone"
    assert stage2.data.sampler == "class_aware" and stage2.model.weights == run.resolve() / "stage1/best.safetensors"
    assert "stage 1 of 2" in outcome.err and "stage 2 of 2" in outcome.err


def test_stage_2_changes_the_classifier_only(whole):
    start = load_checkpoint(whole / "stage1" / "best.safetensors")
    end = load_checkpoint(whole / "stage2" / "last.safetensors")
    assert same(end.section("model.backbone"), start.section("model.backbone"))  # parameters and BN statistics
    assert not torch.equal(end.tensors["model.head.weight"], start.tensors["model.head.weight"])


@pytest.mark.parametrize("stop_after_save", [1, 3], ids=["in-stage-1", "in-stage-2"])
def test_a_run_cut_short_in_either_stage_resumes_to_the_uninterrupted_weights(
    cli, digits_data, whole, tmp_path, monkeypatch, stop_after_save
):
    run = tmp_path / "run"
    with_hooks(monkeypatch, on_epoch_end=raise_at_call(stop_after_save))  # counted over both stages' epochs
    stopped = cli(*two_stage_args(digits_data, run))
    assert stopped.code == 130
    assert stopped.err.strip().splitlines()[-1] == (
        f"Error: interrupted; the last completed checkpoint is kept: bagmar train --out {run} --resume"
    )
    assert (run / "stage2").exists() == (stop_after_save == 3)
    monkeypatch.undo()
    config = (run / "config.toml").read_bytes()
    resumed = cli("train", "--out", run, "--resume")
    assert resumed.code == 0, resumed.err
    assert resumed.out == f"{run / 'stage2' / 'best.safetensors'}\n"
    for stage in ("stage1", "stage2"):
        assert same(weights(run / stage / "last.safetensors"), weights(whole / stage / "last.safetensors"))
    assert (run / "config.toml").read_bytes() == config


def test_a_resume_that_changes_stage_2_is_refused_by_name(cli, whole, tmp_path):
    run = Path(shutil.copytree(whole, tmp_path / "run"))
    outcome = cli("train", "--out", run, "--resume", "--set", "stage2.optim.lr=0.01")
    assert outcome.code == 2 and outcome.err.startswith("Error: --resume continues the run recorded in ")
    assert "stage2.optim.lr = 0.01 would change it (recorded 0.05)" in outcome.err


def test_stage1_flag_skips_stage_1_and_starts_from_the_given_backbone(cli, digits_data, whole, tmp_path):
    given = whole / "stage1" / "last.safetensors"
    run = tmp_path / "run"
    outcome = cli(*two_stage_args(digits_data, run, "--stage1", str(given)))
    assert outcome.code == 0, outcome.err
    assert sorted(p.name for p in run.iterdir()) == ["config.toml", "stage2"]
    assert same(weights(run / "stage2" / "last.safetensors", "model.backbone"), weights(given, "model.backbone"))
    assert "stage 2 only" in outcome.err


def test_stage1_flag_with_one_stage_settings_is_one_error(cli, digits_data, digits_run, tmp_path):
    outcome = cli("train", "--data", digits_data, "--out", tmp_path / "run", "--stage1", digits_run, *STAGE1)
    assert outcome.code == 2 and not (tmp_path / "run").exists()
    assert outcome.err == (
        "Error: --stage1 skips the first of two stages, but these settings train one stage ([stage2] unset)\n"
    )


def test_overwrite_replaces_a_two_stage_run_but_not_a_stage_folder_holding_a_strangers_file(
    cli, digits_data, whole, tmp_path
):
    run = Path(shutil.copytree(whole, tmp_path / "run"))
    (run / "stage1" / "notes.txt").write_text("mine")
    refused = cli("train", "--data", digits_data, "--out", run, "--overwrite", *STAGE1)
    assert refused.code == 2 and "holds files bagmar did not write" in refused.err and "stage1" in refused.err
    assert (run / "stage1" / "notes.txt").read_text() == "mine" and (run / "stage2" / "best.safetensors").exists()
    (run / "stage1" / "notes.txt").unlink()
    replaced = cli("train", "--data", digits_data, "--out", run, "--overwrite", *STAGE1)
    assert replaced.code == 0, replaced.err
    assert sorted(p.name for p in run.iterdir() if not p.name.startswith("events.out.tfevents.")) == [
        "best.safetensors",
        "config.toml",
        "last.safetensors",
        "metrics.jsonl",
    ]


def test_a_two_stage_run_directory_is_not_reused_without_resume_or_overwrite(cli, digits_data, whole, tmp_path):
    run = Path(shutil.copytree(whole, tmp_path / "run"))
    outcome = cli(*two_stage_args(digits_data, run))
    assert outcome.code == 2 and outcome.err == (
        f"Error: --out {run} already holds a run; pass --resume to continue it or --overwrite\n"
    )
