"""The epoch loop of one stage, readable top to bottom: train, validate, log, checkpoint, say where the run stands."""

from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch.nn.parallel import DistributedDataParallel

from bagmar_cli.checkpoint import save_adapters, save_checkpoint
from bagmar_cli.console import err, info, warn
from bagmar_cli.data.splits import OpenedSplit, open_split
from bagmar_cli.engine import distributed
from bagmar_cli.engine.batches import DeviceBatches, SampleBatches, resolve_workers
from bagmar_cli.engine.evaluate.inference import sharded_outputs
from bagmar_cli.engine.tensorboard import EpochLog
from bagmar_cli.engine.train.adapters import adapters_file
from bagmar_cli.engine.train.build import Job, batch_source, open_selection_split, train_transform_of
from bagmar_cli.engine.train.eta import RunClock
from bagmar_cli.engine.train.hooks import Hooks
from bagmar_cli.engine.train.metrics import EpochRecord, SplitScores, append_record, keep_records
from bagmar_cli.engine.train.resume import restore_training, training_checkpoint
from bagmar_cli.engine.train.rundir import RunDir
from bagmar_cli.engine.train.step import TrainStep, build_mixup, first_non_finite
from bagmar_cli.errors import TrainingError
from bagmar_cli.files import atomic_write
from bagmar_cli.functional.metrics import classification_report
from bagmar_cli.signals import sigterm_as_interrupt

Batches = DeviceBatches | SampleBatches


def fit(job: Job, run: RunDir | None, resume_from: Path | None, hooks: Hooks | None = None) -> Path | None:
    """Train `job` for its epochs (the schedule steps with the optimiser), validating, logging and checkpointing
    into `run` (rank 0's; None on the others); returns the selected checkpoint (None off rank 0)."""
    hooks = hooks or Hooks()
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
        warn("best epoch is selected on the test split (no val split): prepare with `val_per_class` to hold one out")
    if run:
        if resume_from is None:  # a resume keeps the config.toml its weights were trained with
            atomic_write(run.config, job.settings.to_toml().encode())
        keep_records(run.metrics, job.state.epoch)
    epochs, state = job.settings.train.epochs, job.state
    board = EpochLog(run.path) if run else None
    clock = RunClock(len(batches), epochs - state.epoch, job.later_steps)
    with sigterm_as_interrupt(), contextlib.closing(board) if board else contextlib.nullcontext():
        for epoch in range(state.epoch, epochs):
            hooks.epoch_start(epoch + 1)
            job.loss_fn.set_epoch(epoch)
            record = _train_epoch(job, step, batches, epoch)
            if train_split.files:
                record.undecodable = distributed.sum_over_ranks(batches.failed, job.world, job.device)
            state.epoch = epoch + 1
            if state.epoch % job.settings.train.val_every == 0 or state.epoch == epochs:
                record.split, record.scores = job.val_name, _validate(job, val_split)  # each rank scores a shard
            if run is None:
                continue
            if record.scores is not None and record.scores.top1 > state.best_top1:
                state.best_top1, state.best_epoch = record.scores.top1, state.epoch
            append_record(run.metrics, record)  # first: a resume drops lines of epochs not checkpointed
            if board:  # before the checkpoint too: a resume hides the points of epochs it trains again
                board.epoch(record)
            hooks.epoch_logged(record)
            _save(job, run, record)
            info(f"{_epoch_line(record)}; {clock.line(epochs - state.epoch)}")
            hooks.epoch_end(record)
    distributed.barrier(job.world)
    return None if run is None else RunDir.selected_of(run.path)


def _train_epoch(job: Job, step: TrainStep, batches: Batches, epoch: int) -> EpochRecord:
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
    return EpochRecord(epoch=epoch + 1, loss=total / max(seen, 1), lr=step.lr, images_per_s=seen * scale / elapsed)


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


def _validate(job: Job, split: OpenedSplit) -> SplitScores:
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
    return SplitScores.model_validate({key: report[key] for key in SplitScores.model_fields})


def _save(job: Job, run: RunDir, record: EpochRecord) -> None:
    tensors, meta = training_checkpoint(job, record)
    if job.state.best_epoch == job.state.epoch:  # best before last: a run stopped between them replays this epoch
        save_checkpoint(run.best, tensors, meta)
        if job.settings.model.peft != "none":
            save_adapters(run.adapters, *adapters_file(job))
    save_checkpoint(run.last, tensors, meta)


def _epoch_line(record: EpochRecord) -> str:
    line = f"epoch {record.epoch}: loss {record.loss:.4f}, lr {record.lr:.4g}, {record.images_per_s:.0f} img/s"
    if record.scores is not None:
        r = record.scores
        groups = f"many {_pct(r.many)}, medium {_pct(r.medium)}, few {_pct(r.few)}"
        line += f", {record.split} top-1 {r.top1:.2%} ({groups})"
    return line


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"
