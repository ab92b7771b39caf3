"""The training step's speed settings: batch vs per-sample augmentation, log interval, bf16, channels-last, compile,
EMA (checkpointed, resumed, selectable for eval and export), worker count, and `--nproc-per-node`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from support.training import raise_at_call, with_hooks

from bagmar_cli.checkpoint import load_checkpoint
from bagmar_cli.engine import distributed
from bagmar_cli.engine.batches import MAX_AUTO_WORKERS, EpochOrder, resolve_workers
from bagmar_cli.engine.train.step import TrainStep, first_non_finite
from bagmar_cli.losses import build_loss
from bagmar_cli.models import build_model
from bagmar_cli.settings import LossSettings, ModelSettings, load_settings

TINY = ["--device", "cpu", "--batch-size", "16", "--set", "model.backbone=resnet20_cifar"]


def train_args(data: Path, out: Path, *extra: str, epochs: int = 1) -> list[str]:
    return ["train", "--data", str(data), "--out", str(out), "--epochs", str(epochs), *TINY, *extra]


def stopped_in_epoch_2(cli, monkeypatch, args: list[str]) -> None:
    """Run `args` with an interrupt at the start of epoch 2 (as Ctrl-C there would): epoch 1 is checkpointed."""
    with monkeypatch.context() as patch:
        with_hooks(patch, on_epoch_start=raise_at_call(2))
        assert cli(*args).code == 130


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("Error:")]


@pytest.mark.parametrize(
    "setting",
    [
        "data.augment_on='sample'",
        pytest.param("train.precision='bf16'", marks=pytest.mark.slow),  # bf16 on a CPU: 11 s
        "train.channels_last=true",
        "train.log_every=1",
    ],
)
def test_each_speed_setting_trains_on_cpu(cli, digits_data, tmp_path, setting):
    outcome = cli(*train_args(digits_data, tmp_path / "run", "--set", setting))
    assert outcome.code == 0, outcome.err
    ckpt = load_checkpoint(tmp_path / "run" / "last.safetensors")
    assert ckpt.meta.metrics is not None and 0 < ckpt.meta.metrics["loss"] < 10
    assert ckpt.section("loss")["theta"].sum() > 0  # BaGMar statistics were accumulated


def test_batch_and_sample_paths_see_the_same_batches(digits_data):
    """The two augmentation paths share `EpochOrder`: the same indices in the same batches, per epoch."""
    from bagmar_cli.data import load_split

    _, labels = load_split(digits_data, "train")
    settings = load_settings(overrides=["train.batch_size=16", "data.sampler='class'"])
    order = EpochOrder(settings, labels, 10, distributed.World())
    order.set_epoch(3)
    first, again = list(order), list(order)
    order.set_epoch(4)
    other = list(order)
    assert first == again and first != other
    assert len(first) == len(order) == -(-len(labels) // 16)


def test_non_finite_loss_names_its_first_step_inside_a_log_interval(cli, digits_data, tmp_path, monkeypatch):
    """log_every 4: the loss is read after step 4, yet the error names step 3 where it first appeared."""
    from bagmar_cli.engine.train import build

    calls: list[int] = []
    real = build.build_loss

    def poisoned(settings, counts, head_scale=1.0):
        loss_fn = real(settings, counts, head_scale)
        forward = loss_fn.forward

        def nan_from_step_3(logits, labels):
            calls.append(1)
            loss = forward(logits, labels)
            return loss * float("nan") if len(calls) >= 3 else loss

        loss_fn.forward = nan_from_step_3
        return loss_fn

    monkeypatch.setattr(build, "build_loss", poisoned)
    outcome = cli(*train_args(digits_data, tmp_path / "run", "--set", "train.log_every=4"))
    assert outcome.code == 1
    [line] = error_lines(outcome.err)
    assert "non-finite loss (nan) at epoch 1 step 3;" in line
    assert len(calls) == 4  # the run went on to the end of the interval, no further


def test_first_non_finite():
    assert first_non_finite(torch.tensor([1.0, 2.0])) is None
    assert first_non_finite(torch.tensor([1.0, float("inf"), float("nan")])) == 1


def test_ema_is_checkpointed_validated_and_resumed_bit_identically(cli, digits_data, tmp_path, monkeypatch):
    ema = ["--set", "train.ema=true", "--set", "train.ema_decay=0.9"]
    whole, split = tmp_path / "whole", tmp_path / "split"
    assert cli(*train_args(digits_data, whole, *ema, epochs=2)).code == 0
    stopped_in_epoch_2(cli, monkeypatch, train_args(digits_data, split, *ema, epochs=2))
    assert cli(*train_args(digits_data, split, *ema, "--resume", epochs=2)).code == 0
    reference, resumed = load_checkpoint(whole / "last.safetensors"), load_checkpoint(split / "last.safetensors")
    for section in ("model", "ema"):
        ref, got = reference.section(section), resumed.section(section)
        assert ref.keys() == got.keys() and ref
        assert all(torch.equal(ref[k], got[k]) for k in ref), section
    model, ema_weights = reference.section("model"), reference.section("ema")
    assert not torch.equal(model["head.weight"], ema_weights["head.weight"])


@pytest.fixture(scope="module")
def ema_run(digits_data, tmp_path_factory) -> Path:
    from bagmar_cli.engine.train.recipe import train

    settings = load_settings(
        "digits_lt",
        overrides=["model.backbone=resnet20_cifar", "train.ema=true", "train.ema_decay=0.5"],
        flags={"data.root": digits_data, "train.epochs": 1, "train.device": "cpu", "train.batch_size": 16},
    )
    run = tmp_path_factory.mktemp("ema") / "run"
    train(settings, run)
    return run / "last.safetensors"


def test_eval_defaults_to_the_weights_validation_used(cli, ema_run):
    reports = {
        w: cli("eval", ema_run, "--split", "val", "--no-plots", "--json", "--weights", w) for w in ("ema", "model")
    }
    default = cli("eval", ema_run, "--split", "val", "--no-plots", "--json")
    assert all(r.code == 0 for r in (*reports.values(), default))
    recorded = load_checkpoint(ema_run).meta.metrics["val"]["top1"]
    assert default.json()["top1"] == pytest.approx(recorded) == pytest.approx(reports["ema"].json()["top1"])
    assert reports["ema"].json() != reports["model"].json()


def test_export_bundle_takes_the_chosen_weights(cli, ema_run, tmp_path):
    ckpt = load_checkpoint(ema_run)
    for weights in ("ema", "model"):
        out = tmp_path / f"{weights}.safetensors"
        args = ["export", ema_run, "--format", "safetensors", "--tau", "none", "--no-check", "--out", out]
        assert cli(*args, "--weights", weights).code == 0
        bundle = load_checkpoint(out).section("model")
        assert all(torch.equal(bundle[k], ckpt.section(weights)[k]) for k in bundle)


def test_weights_ema_of_a_run_without_ema_is_a_usage_error(cli, digits_run):
    outcome = cli("eval", digits_run, "--no-plots", "--weights", "ema")
    assert outcome.code == 2
    assert error_lines(outcome.err) == [
        f"Error: --weights ema: {digits_run} holds no EMA weights (trained without train.ema)"
    ]
    assert cli("eval", digits_run, "--no-plots", "--weights", "best").code == 2


def test_auto_workers_use_the_machine_only_for_per_sample_work(monkeypatch):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(32)), raising=False)
    assert resolve_workers("auto", per_sample=True) == MAX_AUTO_WORKERS
    assert resolve_workers("auto", per_sample=False) == 0
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert resolve_workers("auto", per_sample=True) == 1
    assert resolve_workers(3, per_sample=False) == 3


def test_sample_path_with_workers_resumes_bit_identically(cli, digits_data, tmp_path, monkeypatch):
    """Per-sample transforms in persistent workers are seeded per (seed, epoch, image): resume replays them."""
    sample = ["--set", "data.augment_on='sample'", "--set", "data.num_workers=2"]
    whole, split = tmp_path / "whole", tmp_path / "split"
    assert cli(*train_args(digits_data, whole, *sample, epochs=2)).code == 0
    stopped_in_epoch_2(cli, monkeypatch, train_args(digits_data, split, *sample, epochs=2))
    assert cli(*train_args(digits_data, split, *sample, "--resume", epochs=2)).code == 0
    ref, got = (load_checkpoint(p / "last.safetensors").section("model") for p in (whole, split))
    assert all(torch.equal(ref[k], got[k]) for k in ref)


def test_nproc_per_node_under_torchrun_is_refused(cli, digits_data, tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    outcome = cli(*train_args(digits_data, tmp_path / "run", "--nproc-per-node", "2"))
    assert outcome.code == 2 and error_lines(outcome.err) == [
        "Error: --nproc-per-node starts torchrun; under torchrun, leave it out"
    ]
    assert not (tmp_path / "run").exists()


def test_nproc_per_node_relaunches_this_command_under_torchrun(cli, digits_data, tmp_path, monkeypatch):
    launched: list[list[str]] = []
    monkeypatch.setattr(distributed.subprocess, "run", lambda cmd, **kw: launched.append(cmd) or Done())
    outcome = cli(*train_args(digits_data, tmp_path / "run", "--set", "train.ema=true", "--nproc-per-node", "3"))
    assert outcome.code == 7  # torchrun's exit code is the command's
    [command] = launched
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "3"]
    assert command[:6] == torchrun and command[6:9] == ["-m", "bagmar_cli", "train"]
    args = command[9:]
    assert "--nproc-per-node" not in args and args[:2] == ["--out", str(tmp_path / "run")]
    assert "model.backbone=resnet20_cifar" in args and "train.ema=true" in args
    assert args[args.index("--batch-size") + 1] == "16" and args[args.index("--data") + 1] == str(digits_data)


class Done:
    returncode = 7


@pytest.mark.slow  # about 35 s on 2 busy cores; the default suite has tests/engine/test_distributed_train.py
def test_nproc_per_node_starts_torchrun_with_two_gloo_processes(digits_data, tmp_path):
    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "bagmar_cli", *train_args(digits_data, out), "--nproc-per-node", "2"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines() == [str(out / "best.safetensors")]  # rank 0 alone prints
    assert load_checkpoint(out / "last.safetensors").meta.epoch == 1
    assert "--nproc-per-node" not in (out / "config.toml").read_text()


def _bagmar_statistics(compile_model: bool) -> tuple[dict[str, torch.Tensor], list[float]]:
    torch.manual_seed(0)
    model = build_model(ModelSettings(backbone="resnet20_cifar"), 10, 3)
    loss_fn = build_loss(LossSettings(name="bagmar"), [50, 20, 10, 5, 5, 4, 3, 2, 1, 1], 1.0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    settings = load_settings(overrides=[f"train.compile={str(compile_model).lower()}"]).train
    step = TrainStep(model, loss_fn, optimizer, settings, torch.device("cpu"))
    data = torch.Generator().manual_seed(1)
    losses = []
    for _ in range(3):
        images, labels = torch.randn(8, 3, 16, 16, generator=data), torch.randint(10, (8,), generator=data)
        losses.append(float(step(images, labels)))
    return loss_fn.state_dict(), losses


@pytest.mark.slow
def test_compiled_and_eager_training_give_the_same_bagmar_statistics():
    eager, eager_losses = _bagmar_statistics(False)
    compiled, compiled_losses = _bagmar_statistics(True)
    assert eager.keys() == compiled.keys() and eager
    for key in eager:
        torch.testing.assert_close(compiled[key], eager[key], rtol=1e-4, atol=1e-6)
    assert compiled_losses == pytest.approx(eager_losses, rel=1e-4)
