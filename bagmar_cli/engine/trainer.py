"""The training recipe, readable top to bottom: data, model, loss, SGD, schedule, epochs, checkpoints."""

from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path
from typing import Any

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch.nn.parallel import DistributedDataParallel

from bagmar_cli.checkpoint import save_checkpoint
from bagmar_cli.console import err, info, warn
from bagmar_cli.data import Manifest
from bagmar_cli.data.splits import OpenedSplit, open_split
from bagmar_cli.engine import distributed
from bagmar_cli.engine.batches import DeviceBatches, SampleBatches, resolve_workers
from bagmar_cli.engine.build import (
    Job,
    batch_source,
    build,
    check_frozen_start,
    is_image_files,
    network_size,
    open_selection_split,
    steps_per_epoch,
    train_transform_of,
)
from bagmar_cli.engine.eta import RunClock
from bagmar_cli.engine.evaluate.inference import sharded_outputs
from bagmar_cli.engine.run_settings import bind_dataset, check_resume
from bagmar_cli.engine.rundir import STAGES, RunDir
from bagmar_cli.engine.runtime import resolve_device
from bagmar_cli.engine.step import TrainStep, build_mixup, first_non_finite
from bagmar_cli.engine.tensorboard import EpochLog
from bagmar_cli.engine.training_state import restore_training, training_checkpoint
from bagmar_cli.errors import TrainingError
from bagmar_cli.files import atomic_write
from bagmar_cli.functional.metrics import classification_report
from bagmar_cli.models.classifier import check_input_size
from bagmar_cli.settings import Settings
from bagmar_cli.signals import sigterm_as_interrupt


def train(settings: Settings, out: Path, *, resume: bool = False, overwrite: bool = False) -> Path | None:
    """Run the recipe into run directory `out`; returns the selected checkpoint (None on ranks other than 0).

    Settings with a [stage2] table train two stages under `out` (engine/stages.py) and return stage 2's.
    A resume refuses settings that would change the run recorded in `out` (see `check_resume`).
    """
    settings, root, manifest = bind_dataset(settings)
    if resume:
        check_resume(out, settings)
    for stage in settings.stages():
        if stage is not None:  # before anything is written: a backbone that cannot take the images is refused
            check_input_size(stage.model, network_size(manifest, stage.data.crop), image_files=is_image_files(manifest))
    device = resolve_device(settings.train.device)
    world = distributed.init_world(device)
    if world.size > 1 and device.type == "cuda":
        device = torch.device("cuda", world.local_rank)

    _, second = settings.stages()
    stage2_steps = 0 if second is None else second.train.epochs * steps_per_epoch(second, manifest, world)

    def run_stage(stage: Settings, folder: Path, continues: bool, replaces: bool) -> Path | None:
        later = stage2_steps if folder == out / STAGES[0] else 0  # stage 1's ETA counts stage 2's steps
        return _train_one(
            stage, root, manifest, device, world, folder, resume=continues, overwrite=replaces, later=later
        )

    try:
        if settings.stage2 is None:
            return run_stage(settings, out, resume, overwrite)
        from bagmar_cli.engine.stages import train_stages

        return train_stages(settings, out, world, run_stage, resume=resume, overwrite=overwrite)
    finally:
        distributed.shutdown(world)


def _train_one(
    settings: Settings,
    root: Path,
    manifest: Manifest,
    device: torch.device,
    world: distributed.World,
    out: Path,
    *,
    resume: bool,
    overwrite: bool,
    later: int = 0,
) -> Path | None:
    """One stage of training into run directory `out` (rank 0 owns it; the other ranks only train); `later`: the
    optimiser steps of the stages after it."""
    if not resume:
        check_frozen_start(settings.model, world)
    run = RunDir(out, overwrite=overwrite, resume=resume) if world.is_main else None
    if run is None:
        job = build(settings, root, manifest, device, world, resuming=resume)
        _fit(job, None, RunDir.last_of(out) if resume else None)
        return None
    with run:
        info(f"run directory: {run.path}")
        job = build(settings, root, manifest, device, world, resuming=resume)
        job.later_steps = later
        return _fit(job, run, run.last if resume else None)


def _fit(job: Job, run: RunDir | None, resume_from: Path | None) -> Path | None:
    """The epoch loop: train (the schedule steps with the optimiser), validate, log, checkpoint (rank 0 writes)."""
    if resume_from is not None:
        job.state = restore_training(job, resume_from)
        info(f"resuming from {resume_from} after epoch {job.state.epoch}")
    net = DistributedDataParallel(job.model) if job.world.size > 1 else job.model
    train_split = open_split(job.root, "train", train_transform_of(job))
    val_split = open_selection_split(job)
    batches = batch_source(job, train_split)
    step = TrainStep(
        net,
        job.loss_fn,
        job.optimizer,
        job.settings.train,
        job.device,
        scheduler=job.scheduler,
        ema=job.ema,
        ema_source=job.model,
        mixup=build_mixup(job.settings.train, job.manifest.num_classes),
        clip_grad=job.settings.optim.clip_grad,
    )
    if job.val_name == "test" and job.world.is_main:
        warn("best epoch is selected on the test split (no val split): prepare with --val-per-class N to hold one out")
    if run:
        if resume_from is None:  # a resume keeps the config.toml its weights were trained with
            atomic_write(run.config, job.settings.to_toml().encode())
        run.truncate_metrics(job.state.epoch)
    epochs, state = job.settings.train.epochs, job.state
    board = EpochLog(run.path) if run else None
    clock = RunClock(len(batches), epochs - state.epoch, job.later_steps)
    with sigterm_as_interrupt(), contextlib.closing(board) if board else contextlib.nullcontext():
        for epoch in range(state.epoch, epochs):
            job.loss_fn.set_epoch(epoch)
            stats = _train_epoch(job, step, batches, epoch)
            if train_split.files:
                stats["undecodable"] = distributed.sum_over_ranks(batches.failed, job.world, job.device)
            state.epoch = epoch + 1
            validates = state.epoch % job.settings.train.val_every == 0 or state.epoch == epochs
            report = _validate(job, val_split) if validates else None  # every rank evaluates its shard
            if run is None:
                continue
            record: dict[str, Any] = {"epoch": state.epoch, **stats}
            if report is not None:
                record[job.val_name] = report
                if report["top1"] > state.best_top1:
                    state.best_top1, state.best_epoch = report["top1"], state.epoch
            run.append_metrics(record)  # first: a resume drops lines of epochs not checkpointed
            if board:  # before the checkpoint too: a resume hides the points of epochs it trains again
                board.epoch(record, job.val_name)
            _save(job, run, record)
            info(f"{_epoch_line(record, job.val_name)}; {clock.line(epochs - state.epoch)}")
    distributed.barrier(job.world)
    return None if run is None else RunDir.selected_of(run.path)


def _train_epoch(job: Job, step: TrainStep, batches: DeviceBatches | SampleBatches, epoch: int) -> dict[str, float]:
    """One pass; the loss is read from the device every `train.log_every` steps and at the end, never per step."""
    step.net.train()
    for norm in job.still_norms:  # frozen: their running statistics stay those of the loaded weights
        norm.eval()
    job.loss_fn.train()
    scale, log_every = job.world.size, job.settings.train.log_every
    window: list[torch.Tensor] = []  # this log interval's losses, still on the device
    sizes: list[int] = []
    total, seen, start = 0.0, 0, time.perf_counter()
    with _progress(job.world) as bar:
        title = f"epoch {epoch + 1}/{job.settings.train.epochs}"
        task = bar.add_task(title, total=len(batches), loss=math.nan, lr=0.0, ips=0.0)
        for index, (images, labels) in enumerate(batches.epoch(epoch)):
            window.append(step(images, labels))
            sizes.append(len(labels))
            if len(window) == log_every:
                total += _read_losses(job, window, sizes, epoch, first_step=index + 2 - len(window))
                seen += sum(sizes)
                window, sizes = [], []
                rate = seen * scale / max(time.perf_counter() - start, 1e-9)
                bar.update(task, completed=index + 1, loss=total / seen, lr=_lr(job), ips=rate)
        if window:
            total += _read_losses(job, window, sizes, epoch, first_step=len(batches) + 1 - len(window))
            seen += sum(sizes)
    elapsed = time.perf_counter() - start
    return {"loss": total / max(seen, 1), "lr": step.lr, "images_per_s": seen * scale / elapsed}


def _read_losses(job: Job, window: list[torch.Tensor], sizes: list[int], epoch: int, first_step: int) -> float:
    """The window's size-weighted loss sum (one host read); TrainingError naming the first non-finite step."""
    losses = torch.stack(window).float().cpu()
    bad = first_non_finite(losses)
    if bad is not None:
        kept = (
            "the last good checkpoint is kept"
            if job.state.epoch
            else "no epoch completed, so there is no checkpoint to go back to"
        )
        raise TrainingError(
            f"non-finite loss ({losses[bad].item()}) at epoch {epoch + 1} step {first_step + bad}; "
            f"{kept}; lower optim.lr or check the data"
        )
    return float((losses.double() * torch.tensor(sizes, dtype=torch.float64)).sum())


def _lr(job: Job) -> float:
    return float(job.optimizer.param_groups[0]["lr"])


def _progress(world: distributed.World) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}  lr {task.fields[lr]:.4g}  {task.fields[ips]:.0f} img/s"),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=not (world.is_main and err.is_terminal),
    )


def _validate(job: Job, split: OpenedSplit) -> dict[str, Any]:
    """Accuracy on the selection split (the same metrics `bagmar eval` reports); each rank runs a shard of it."""
    model = job.eval_model  # the EMA's weights when train.ema is on
    distributed.broadcast_buffers(model, job.world)  # rank 0's BatchNorm statistics, the checkpoint's
    outputs = sharded_outputs(
        model,
        split,
        job.world,
        batch_size=job.settings.eval.batch_size,
        device=job.device,
        workers=resolve_workers(job.settings.data.num_workers, per_sample=True) if split.files else 0,
    )
    report = classification_report(outputs.logits, outputs.labels, torch.as_tensor(job.counts))
    return {k: report[k] for k in ("top1", "top5", "many", "medium", "few", "macro", "n")}


def _save(job: Job, run: RunDir, record: dict[str, Any]) -> None:
    tensors, meta = training_checkpoint(job, record)
    if job.state.best_epoch == job.state.epoch:  # best before last: a run stopped between them replays this epoch
        save_checkpoint(run.best, tensors, meta)
    save_checkpoint(run.last, tensors, meta)


def _epoch_line(record: dict[str, Any], val_name: str) -> str:
    line = (
        f"epoch {record['epoch']}: loss {record['loss']:.4f}, lr {record['lr']:.4g}, {record['images_per_s']:.0f} img/s"
    )
    if val_name in record:
        r = record[val_name]
        groups = f"many {_pct(r['many'])}, medium {_pct(r['medium'])}, few {_pct(r['few'])}"
        line += f", {val_name} top-1 {r['top1']:.2%} ({groups})"
    return line


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"
