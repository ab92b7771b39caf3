"""Faults during training: non-finite loss, full disk, signals, SIGKILL, and two trainers on one run directory.

Whatever stops a run, what is on disk must load, and `train --resume` must end on the very weights an
uninterrupted run reaches (CPU training is deterministic).
"""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from support.training import raise_at_call, with_hooks

from bagmar_cli import files
from bagmar_cli.checkpoint import load_checkpoint
from bagmar_cli.cli import main
from bagmar_cli.engine.train import build

EPOCHS = 2
TINY = ["--device", "cpu", "--batch-size", "16", "--set", "model.backbone=resnet20_cifar"]  # 34 steps an epoch


def train_args(data: Path, out: Path, epochs: int = EPOCHS) -> list[str]:
    return ["train", "--data", str(data), "--out", str(out), "--epochs", str(epochs), *TINY]


def model_tensors(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path).section("model")


def assert_same_weights(path: Path, reference: dict[str, torch.Tensor]) -> None:
    weights = model_tensors(path)
    assert weights.keys() == reference.keys()
    differ = [key for key in reference if not torch.equal(weights[key], reference[key])]
    assert not differ, f"{len(differ)} model tensors differ from the uninterrupted run, e.g. {differ[:3]}"


def assert_loadable(run: Path) -> None:
    """What a stopped run leaves must load: its checkpoints and every metrics line."""
    for name in ("last.safetensors", "best.safetensors"):
        if (run / name).exists():
            load_checkpoint(run / name)
    if (run / "metrics.jsonl").exists():
        for line in (run / "metrics.jsonl").read_text().splitlines():
            assert isinstance(json.loads(line)["epoch"], int)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("Error:")]


@pytest.fixture(scope="module")
def reference(digits_data: Path, tmp_path_factory) -> dict[str, torch.Tensor]:
    """The final weights of an uninterrupted run with train_args' settings."""
    run = tmp_path_factory.mktemp("reference") / "run"
    assert main(train_args(digits_data, run)) == 0
    return model_tensors(run / "last.safetensors")


# `python -m bagmar_cli` with one addition: each optimizer step appends a byte to a beacon file and takes
# 10 ms more, so that the tests can signal the trainer at a chosen step however fast the machine is.
BEACON = """
import signal, sys, time, torch
signal.signal(signal.SIGINT, signal.default_int_handler)  # a KeyboardInterrupt even where the runner ignores SIGINT
beacon, sys.argv = sys.argv[1], ["bagmar", *sys.argv[2:]]
step = torch.optim.SGD.step
def counted(self, *args, **kwargs):
    result = step(self, *args, **kwargs)
    with open(beacon, "ab") as handle:
        handle.write(b".")
    time.sleep(0.01)
    return result
torch.optim.SGD.step = counted
from bagmar_cli.cli import main
main()
"""
STEPS_PER_EPOCH = 34  # 544 training images in batches of 16


def spawn(args: list[str], cwd: Path) -> subprocess.Popen:
    """`bagmar ARGS` in a new process, with SIGINT at its default (a background shell may have it ignored)."""
    env = {**os.environ, "BAGMAR_DATA_DIR": str(cwd / "data")}
    return subprocess.Popen(
        [sys.executable, "-c", BEACON, str(cwd / "steps"), *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def steps_done(cwd: Path) -> int:
    try:
        return (cwd / "steps").stat().st_size
    except FileNotFoundError:
        return 0


def signal_at_step(proc: subprocess.Popen, cwd: Path, signum: int, step: int) -> str:
    """Send `signum` once the trainer has taken `step` optimizer steps; returns its stderr."""
    deadline = time.monotonic() + 180
    while steps_done(cwd) < step:
        if proc.poll() is not None:
            pytest.fail(f"bagmar ended (code {proc.returncode}) before step {step}:\n{proc.communicate()[1]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"step {step} not reached in time")
        time.sleep(0.002)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=120)
    assert "Traceback" not in err and out == "", (out, err)  # stdout would hold the result of a finished run
    return err


def metric_lines(run: Path) -> int:
    try:
        return len((run / "metrics.jsonl").read_text().splitlines())
    except FileNotFoundError:
        return 0


# signal -> the optimizer step after which it is sent (34 steps an epoch), spread over the run.
# SIGTERM is sent by the test of two trainers on one run directory.
KILL_POINTS = {
    "kill-in-epoch-1": (signal.SIGKILL, 10),  # no checkpoint yet: resume refuses in one line
    "kill-in-epoch-2": (signal.SIGKILL, STEPS_PER_EPOCH + 5),
    "sigint-in-epoch-2": (signal.SIGINT, STEPS_PER_EPOCH + 20),  # slow suite (SIGTERM: the two-trainers test)
}
_draw = random.Random(7)  # the slow variant: 12 points drawn over a 4-epoch run, the same on every run
SLOW_KILL_POINTS = {
    f"{signal.Signals(signum).name.lower()}-{i}": (signum, _draw.randint(1, 4 * STEPS_PER_EPOCH - 1))
    for i, signum in enumerate([signal.SIGKILL] * 8 + [signal.SIGINT, signal.SIGTERM] * 2)
}


def assert_interrupted(proc: subprocess.Popen, stderr: str, run: Path) -> None:
    """Exit 130, the one `Error:` line last, no traceback, the lock released."""
    assert proc.returncode == 130, stderr
    assert error_lines(stderr) == [stderr.strip().splitlines()[-1]] and "interrupted" in stderr
    assert not (run / ".lock").exists()


def resume_matches_reference(cli, digits_data, run, reference, epochs=EPOCHS) -> None:
    """`train --resume` ends on the reference weights with one metrics line per epoch; or, when no
    checkpoint was written yet, refuses in one line."""
    resumed = cli(*train_args(digits_data, run, epochs), "--resume")
    if not (run / "last.safetensors").exists():
        assert resumed.code == 2 and error_lines(resumed.err) == [resumed.err.strip()]
        assert "nothing to resume" in resumed.err
        return
    assert resumed.code == 0, resumed.err
    assert not (run / ".lock").exists()
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]
    assert_same_weights(run / "last.safetensors", reference)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == list(range(1, epochs + 1))


def _kill_and_resume(cli, digits_data, reference, tmp_path, signum, step, epochs=EPOCHS):
    run = tmp_path / "run"
    proc = spawn(train_args(digits_data, run, epochs), tmp_path)
    stderr = signal_at_step(proc, tmp_path, signum, step)
    if signum == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
        assert int((run / ".lock").read_text()) == proc.pid  # a stale lock, taken over by the resume
    else:
        assert_interrupted(proc, stderr, run)
    assert_loadable(run)
    resume_matches_reference(cli, digits_data, run, reference, epochs)


@pytest.mark.parametrize(
    ("signum", "step"),
    [
        pytest.param(*point, id=name, marks=[pytest.mark.slow] if name.startswith("sigint") else [])
        for name, point in KILL_POINTS.items()
    ],
)
def test_stopped_run_resumes_to_the_same_weights(cli, digits_data, reference, tmp_path, signum, step):
    _kill_and_resume(cli, digits_data, reference, tmp_path, signum, step)


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "step"), SLOW_KILL_POINTS.values(), ids=SLOW_KILL_POINTS.keys())
def test_stopped_run_resumes_to_the_same_weights_at_more_points(
    cli, digits_data, reference_of_4_epochs, tmp_path, signum, step
):
    _kill_and_resume(cli, digits_data, reference_of_4_epochs, tmp_path, signum, step, epochs=4)


@pytest.fixture(scope="module")
def reference_of_4_epochs(digits_data: Path, tmp_path_factory) -> dict[str, torch.Tensor]:
    run = tmp_path_factory.mktemp("reference") / "run"
    assert main(train_args(digits_data, run, 4)) == 0
    return model_tensors(run / "last.safetensors")


# overrides, epochs; each run is interrupted after its first epoch (in-process, after the checkpoint is saved)
RECIPES = {
    # the decay after epoch 2 comes after the resume (JSON once turned the milestones into strings that never matched)
    "step-schedule-ldam-drw": (
        [
            "schedule.name=step",
            "schedule.warmup_epochs=0",
            "schedule.milestones=[2]",
            "loss.name=ldam",
            "loss.reweight=cb",
            "loss.reweight_epoch=1",
        ],
        3,
    ),
    # slow: the kill tests above already cover the transforms' random numbers (random crops)
    "class-sampler-cutout-flip": pytest.param(
        ["data.sampler=class", "data.cutout=4", "data.hflip=true"], 2, marks=pytest.mark.slow
    ),
    "per-sample-in-process": (["data.augment_on=sample", "data.num_workers=0"], 2),
    "per-sample-loader-workers": pytest.param(
        ["data.augment_on=sample", "data.num_workers=2"], 2, marks=pytest.mark.slow
    ),
    # the head in its own optimiser group (2 groups restored), a frozen part of the backbone, class-aware sampling
    "head-group-frozen-stages-class-aware": (
        [
            "optim.head_lr=0.3",
            "optim.head_weight_decay=0.0",
            "model.freeze=all_but_last_stage",
            "data.sampler=class_aware",
        ],
        2,
    ),
    # lr and head_lr stated for 256 images, scaled linearly to this run's 64: the resume keeps the scaled lrs
    "lr-scaled-linearly-to-the-batch": (
        ["optim.lr_batch=256", "optim.lr_scaling=linear", "optim.lr=0.4", "optim.head_lr=0.2"],
        2,
    ),
    # AdamW's moments and step counts, and the numpy draws of mixup/cutmix, continue where they stopped
    "adamw-mixup-cutmix-smoothing-clip": (
        [
            "optim.name=adamw",
            "optim.lr=0.003",
            "optim.clip_grad=1.0",
            "loss.label_smoothing=0.1",
            "train.mixup_alpha=0.4",
            "train.cutmix_alpha=1.0",
        ],
        2,
    ),
    # slow: bf16 on a CPU (13 s)
    "ema-bf16-channels-last-log-every-5": pytest.param(
        ["train.ema=true", "train.precision=bf16", "train.channels_last=true", "train.log_every=5"],
        2,
        marks=pytest.mark.slow,
    ),
}


@pytest.mark.parametrize(("overrides", "epochs"), RECIPES.values(), ids=RECIPES.keys())
def test_resume_after_an_interrupt_is_bit_identical_for_other_recipes(
    cli, digits_data, tmp_path, monkeypatch, overrides, epochs
):
    sets = [*(arg for item in overrides for arg in ("--set", item)), "--epochs", str(epochs), "--batch-size", "64"]
    whole = cli(*train_args(digits_data, tmp_path / "whole"), *sets)
    assert whole.code == 0, whole.err
    with_hooks(monkeypatch, on_epoch_end=raise_at_call(1))  # after epoch 1's checkpoint
    stopped = cli(*train_args(digits_data, tmp_path / "run"), *sets)
    assert stopped.code == 130 and error_lines(stopped.err) == [stopped.err.strip().splitlines()[-1]]
    monkeypatch.undo()
    resumed = cli(*train_args(digits_data, tmp_path / "run"), *sets, "--resume")
    assert resumed.code == 0, resumed.err
    whole_ckpt, resumed_ckpt = (
        load_checkpoint(tmp_path / "whole" / "last.safetensors"),
        load_checkpoint(tmp_path / "run" / "last.safetensors"),
    )
    assert_same_weights(tmp_path / "run" / "last.safetensors", whole_ckpt.section("model"))
    assert resumed_ckpt.meta.optimizer_param_groups == whole_ckpt.meta.optimizer_param_groups  # same lr
    metrics = [(tmp_path / run / "metrics.jsonl").read_text() for run in ("whole", "run")]
    assert [json.loads(line)["lr"] for line in metrics[1].splitlines()] == [
        json.loads(line)["lr"] for line in metrics[0].splitlines()
    ]


def test_resume_with_only_the_run_directory_reaches_the_uninterrupted_weights(
    cli, digits_data, reference, tmp_path, monkeypatch
):
    """The run directory holds its settings: `train --out R --resume` alone continues the same run."""
    run = tmp_path / "run"
    with_hooks(monkeypatch, on_epoch_end=raise_at_call(1))  # after epoch 1's checkpoint
    stopped = cli(*train_args(digits_data, run))
    assert stopped.code == 130
    assert error_lines(stopped.err) == [
        f"Error: interrupted; the last completed checkpoint is kept: bagmar train --out {run} --resume"
    ]
    monkeypatch.undo()
    config = (run / "config.toml").read_bytes()
    resumed = cli("train", "--out", run, "--resume")
    assert resumed.code == 0, resumed.err
    assert_same_weights(run / "last.safetensors", reference)
    assert (run / "config.toml").read_bytes() == config


def test_second_trainer_is_refused_and_sigterm_stops_the_first_resumably(cli, digits_data, reference, tmp_path):
    run = tmp_path / "run"
    first = spawn(train_args(digits_data, run), tmp_path)
    while steps_done(tmp_path) < 1 and first.poll() is None:  # the lock is taken before the first step
        time.sleep(0.002)
    second = cli(*train_args(digits_data, run), "--overwrite")
    assert second.code == 1 and error_lines(second.err) == [second.err.strip()]
    assert f"{run} is in use by another bagmar process (pid {first.pid})" in second.err
    assert int((run / ".lock").read_text()) == first.pid
    stderr = signal_at_step(first, tmp_path, signal.SIGTERM, STEPS_PER_EPOCH + 12)
    assert_interrupted(first, stderr, run)
    assert_loadable(run)
    resume_matches_reference(cli, digits_data, run, reference)


def test_stale_lock_of_a_dead_process_is_taken_over(cli, digits_data, tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    run = tmp_path / "run"
    run.mkdir()
    (run / ".lock").write_text(f"{dead.pid}\n")
    trained = cli(*train_args(digits_data, run, epochs=1))
    assert trained.code == 0, trained.err
    assert (run / "last.safetensors").is_file() and not (run / ".lock").exists()


@pytest.fixture(scope="module")
def stopped_after_2_of_3(digits_data: Path, tmp_path_factory) -> Path:
    """A 3-epoch run interrupted right after epoch 2's checkpoint (in-process)."""
    run = tmp_path_factory.mktemp("stopped") / "run"
    with pytest.MonkeyPatch.context() as patch:
        with_hooks(patch, on_epoch_end=raise_at_call(2))
        assert main(train_args(digits_data, run, epochs=3)) == 130
    return run


@pytest.fixture
def finished_run(stopped_after_2_of_3: Path, tmp_path: Path) -> Path:
    """A copy of a run stopped after 2 of its 3 epochs, to continue for the last one."""
    return Path(shutil.copytree(stopped_after_2_of_3, tmp_path / "run"))


def continue_args(digits_data: Path, run: Path) -> list[str]:
    return [*train_args(digits_data, run, epochs=3), "--resume"]


def test_non_finite_loss_stops_with_the_step_named_and_keeps_the_last_checkpoint(
    cli, digits_data, finished_run, monkeypatch
):
    checkpoints = [finished_run / "last.safetensors", finished_run / "best.safetensors"]
    before = [path.read_bytes() for path in checkpoints]
    steps = []
    build_loss = build.build_loss

    def poisoned(settings, counts, head_scale=1.0):
        loss_fn = build_loss(settings, counts, head_scale)
        original = loss_fn.forward

        def nan_at_step_3(logits, labels):
            steps.append(1)
            loss = original(logits, labels)
            return loss * float("nan") if len(steps) == 3 else loss

        loss_fn.forward = nan_at_step_3
        return loss_fn

    monkeypatch.setattr(build, "build_loss", poisoned)
    outcome = cli(*continue_args(digits_data, finished_run))
    assert outcome.code == 1 and "Traceback" not in outcome.err
    assert error_lines(outcome.err) == [
        "Error: non-finite loss (nan) at epoch 3 step 3; the last good checkpoint is "
        "kept; lower optim.lr or check the data"
    ]
    assert [path.read_bytes() for path in checkpoints] == before
    assert not (finished_run / ".lock").exists()


def test_exploding_learning_rate_is_a_non_finite_loss(cli, digits_data, tmp_path):
    outcome = cli(*train_args(digits_data, tmp_path / "run", epochs=1), "--set", "optim.lr=1e30")
    assert outcome.code == 1 and "Traceback" not in outcome.err
    [line] = error_lines(outcome.err)
    assert line.startswith("Error: non-finite loss") and "at epoch 1 step " in line
    assert "no epoch completed, so there is no checkpoint to go back to" in line and "last good" not in line
    assert not (tmp_path / "run" / ".lock").exists() and not (tmp_path / "run" / "last.safetensors").exists()


def test_full_disk_while_saving_keeps_the_previous_checkpoint(cli, digits_data, finished_run, monkeypatch):
    before = {p.name: p.read_bytes() for p in finished_run.glob("*.safetensors")}
    fsync = os.fsync

    def full_once_epoch_3_is_recorded(fd):
        if metric_lines(finished_run) >= 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        fsync(fd)

    monkeypatch.setattr(files.os, "fsync", full_once_epoch_3_is_recorded)
    outcome = cli(*continue_args(digits_data, finished_run))
    assert outcome.code == 1 and "Traceback" not in outcome.err and "unexpected" not in outcome.err
    [line] = error_lines(outcome.err)
    assert line.startswith(f"Error: No space left on device while writing {finished_run}/")
    assert line.endswith(".safetensors")
    assert {p.name: p.read_bytes() for p in finished_run.glob("*.safetensors")} == before
    assert sorted(p.name for p in finished_run.iterdir() if not p.name.startswith("events.out.tfevents.")) == [
        "best.safetensors",
        "config.toml",
        "last.safetensors",
        "metrics.jsonl",
    ]
    monkeypatch.undo()
    # The line of the epoch that was not saved is dropped when the run continues.
    assert main(continue_args(digits_data, finished_run)) == 0
    epochs = [json.loads(line)["epoch"] for line in (finished_run / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3] and load_checkpoint(finished_run / "last.safetensors").meta.epoch == 3
