"""The training recipe, readable top to bottom: data, model, loss, SGD, schedule, epochs, checkpoints."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from timm.utils.model_ema import ModelEmaV3
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.lr_scheduler import LRScheduler

from bagmar_cli.checkpoint import save_checkpoint
from bagmar_cli.console import err, info, warn
from bagmar_cli.data import Manifest
from bagmar_cli.data.batch_augment import BatchAugment
from bagmar_cli.data.image_transforms import image_train_transform
from bagmar_cli.data.images import EvalPreprocess
from bagmar_cli.data.splits import OpenedSplit, dataset_preprocess, is_file_list, open_eval_split, open_split
from bagmar_cli.data.transforms import TensorImages, train_transform
from bagmar_cli.engine import distributed
from bagmar_cli.engine.batches import DeviceBatches, EpochOrder, SampleBatches, process_batch, resolve_workers
from bagmar_cli.engine.inference import sharded_outputs
from bagmar_cli.engine.optimizer import build_optimizer, lr_rule_line
from bagmar_cli.engine.restore import evaluation_split
from bagmar_cli.engine.run_settings import bind_dataset, check_resume
from bagmar_cli.engine.rundir import RunDir
from bagmar_cli.engine.runtime import resolve_device, seed_everything
from bagmar_cli.engine.schedule import build_scheduler
from bagmar_cli.engine.step import TrainStep, build_ema, first_non_finite, prepare_model
from bagmar_cli.engine.training_state import TrainingProgress, restore_training, training_checkpoint
from bagmar_cli.errors import TrainingError, UsageError
from bagmar_cli.files import atomic_write
from bagmar_cli.functional.metrics import classification_report
from bagmar_cli.losses import ClassWeightedLoss, build_loss
from bagmar_cli.models import Classifier, build_model
from bagmar_cli.models.freeze import freeze
from bagmar_cli.settings import DataSettings, ModelSettings, Settings
from bagmar_cli.signals import sigterm_as_interrupt


def selection_split(data: DataSettings, manifest: Manifest) -> str:
    """The split for best-epoch selection: `val` when the dataset has one (auto), else `test`."""
    if data.val_split != "auto":
        if data.val_split not in manifest.splits:
            raise UsageError(f"data.val_split {data.val_split!r} not in the dataset (has {sorted(manifest.splits)})")
        return data.val_split
    return evaluation_split(manifest)


def train(settings: Settings, out: Path, *, resume: bool = False, overwrite: bool = False) -> Path | None:
    """Run the recipe into run directory `out`; returns the selected checkpoint (None on ranks other than 0).

    Settings with a [stage2] table train two stages under `out` (engine/stages.py) and return stage 2's.
    A resume refuses settings that would change the run recorded in `out` (see `check_resume`).
    """
    settings, root, manifest = bind_dataset(settings)
    if resume:
        check_resume(out, settings)
    device = resolve_device(settings.train.device)
    world = distributed.init_world(device)
    if world.size > 1 and device.type == "cuda":
        device = torch.device("cuda", world.local_rank)

    def run_stage(stage: Settings, folder: Path, continues: bool, replaces: bool) -> Path | None:
        return _train_one(stage, root, manifest, device, world, folder, resume=continues, overwrite=replaces)

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
) -> Path | None:
    """One stage of training into run directory `out` (rank 0 owns it; the other ranks only train)."""
    if not resume:
        _check_frozen_start(settings.model, world)
    run = RunDir(out, overwrite=overwrite, resume=resume) if world.is_main else None
    if run is None:
        _fit(
            _build(settings, root, manifest, device, world, resuming=resume),
            None,
            RunDir.last_of(out) if resume else None,
        )
        return None
    with run:
        info(f"run directory: {run.path}")
        return _fit(_build(settings, root, manifest, device, world, resuming=resume), run, run.last if resume else None)


def _check_frozen_start(model: ModelSettings, world: distributed.World) -> None:
    """A frozen backbone must start from weights: random features that never learn are no classifier re-training."""
    if model.freeze == "none" or model.pretrained or model.weights is not None:
        return
    if model.freeze == "backbone":
        raise UsageError(
            'model.freeze = "backbone" keeps the backbone as it starts, and nothing gives it weights: pass '
            "--set model.weights=FILE (a stage-1 checkpoint or a timm state dict) or model.pretrained=true"
        )
    if world.is_main:
        warn(
            f'model.freeze = "{model.freeze}" keeps randomly initialised layers frozen: no model.weights or pretrained'
        )


@dataclass
class Job:
    """What one training process holds: settings, data, model, loss, optimiser, schedule and progress."""

    settings: Settings
    root: Path
    manifest: Manifest
    device: torch.device
    world: distributed.World
    model: Classifier
    loss_fn: ClassWeightedLoss
    optimizer: torch.optim.Optimizer
    scheduler: LRScheduler
    val_name: str  # the split that selects the best epoch
    state: TrainingProgress
    ema: ModelEmaV3 | None = None  # the weights' moving average (train.ema), validated instead of the model
    still_norms: list[nn.Module] = field(default_factory=list)  # frozen BatchNorms kept in eval mode in training

    @property
    def eval_model(self) -> Classifier:
        """The weights validation scores (and eval/export use by default): the EMA's when train.ema is on."""
        return cast(Classifier, self.ema.module) if self.ema is not None else self.model  # EMA: a deep copy of it

    @property
    def preprocess(self) -> EvalPreprocess | None:
        """Image files: the evaluation preprocessing (recorded in checkpoints); None for tensor datasets."""
        if not is_file_list(self.manifest, "train"):
            return None
        return dataset_preprocess(self.manifest, self.settings.data.crop)

    @property
    def input_size(self) -> list[int]:
        """[C, H, W] the network sees: the crop of image files, else the tensors' size."""
        channels, height, width = self.manifest.image_size
        return [channels, self.preprocess.crop, self.preprocess.crop] if self.preprocess else [channels, height, width]

    @property
    def counts(self) -> list[int]:
        return self.manifest.splits["train"].counts


def _build(
    settings: Settings,
    root: Path,
    manifest: Manifest,
    device: torch.device,
    world: distributed.World,
    *,
    resuming: bool = False,
) -> Job:
    """Seed, then create the model, loss, SGD and schedule the settings describe (a resumed model takes its
    weights from the checkpoint, so pretrained or `model.weights` files are not read again)."""
    seed_everything(settings.train.seed + world.rank)
    model_settings = settings.model
    if resuming:
        model_settings = model_settings.model_copy(update={"pretrained": False, "weights": None})
    built = build_model(model_settings, manifest.num_classes, manifest.image_size[0])
    frozen_norms = freeze(built, settings.model.freeze)
    model = prepare_model(built, settings.train).to(device)
    loss_fn = build_loss(settings.loss, manifest.splits["train"].counts, settings.model.head_scale).to(device)
    batch = process_batch(settings.train.batch_size, world.size) * world.size  # the images one step averages over
    optimizer = build_optimizer(model, settings.optim, batch)  # the schedule starts from its (maybe scaled) lrs
    if world.is_main and (rule := lr_rule_line(settings.optim, batch, world.size)):
        info(rule)
    scheduler = build_scheduler(optimizer, settings.schedule, settings.train.epochs)
    val_name = selection_split(settings.data, manifest)
    return Job(
        settings,
        root,
        manifest,
        device,
        world,
        model,
        loss_fn,
        optimizer,
        scheduler,
        val_name,
        TrainingProgress(),
        build_ema(model, settings.train),
        frozen_norms if settings.model.frozen_bn == "eval" else [],
    )


def _fit(job: Job, run: RunDir | None, resume_from: Path | None) -> Path | None:
    """The epoch loop: train, step the schedule, validate, log, checkpoint (rank 0 only writes)."""
    if resume_from is not None:
        job.state = restore_training(job, resume_from)
        info(f"resuming from {resume_from} after epoch {job.state.epoch}")
    net = DistributedDataParallel(job.model) if job.world.size > 1 else job.model
    train_split = open_split(job.root, "train", _train_transform(job))
    val_split = _open_val(job)
    batches = _loader(job, train_split)
    step = TrainStep(net, job.loss_fn, job.optimizer, job.settings.train, job.device, ema=job.ema, ema_source=job.model)
    if job.val_name == "test" and job.world.is_main:
        warn("best epoch is selected on the test split (no val split): prepare with --val-per-class N to hold one out")
    if run:
        if resume_from is None:  # a resume keeps the config.toml its weights were trained with
            atomic_write(run.config, job.settings.to_toml().encode())
        run.truncate_metrics(job.state.epoch)
    epochs, state = job.settings.train.epochs, job.state
    with sigterm_as_interrupt():
        for epoch in range(state.epoch, epochs):
            job.loss_fn.set_epoch(epoch)
            stats = _train_epoch(job, step, batches, epoch)
            if train_split.files:
                stats["undecodable"] = distributed.sum_over_ranks(batches.failed, job.world, job.device)
            job.scheduler.step()
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
            _save(job, run, record)
            info(_epoch_line(record, job.val_name))
    distributed.barrier(job.world)
    return None if run is None else RunDir.selected_of(run.path)


def _train_transform(job: Job) -> Any:
    """The training augmentation: timm's large-scale recipe for image files (small ones padded and cropped), the CIFAR
    recipe for tensors."""
    if job.preprocess is not None:
        return image_train_transform(job.settings.data, job.preprocess, native_size=job.manifest.native_size)
    return train_transform(job.settings.data, job.manifest.image_size, job.manifest.mean, job.manifest.std)


def _open_val(job: Job) -> OpenedSplit:
    """The selection split, preprocessed as `bagmar eval` will preprocess it for the checkpoint."""
    return open_eval_split(job.root, job.val_name, job.preprocess, job.manifest.mean, job.manifest.std)


def _loader(job: Job, split: OpenedSplit) -> DeviceBatches | SampleBatches:
    """The run's batch source; each epoch's order is a function of (seed, epoch), so resume replays it.

    In-memory splits are augmented a batch at a time on the device (`data.augment_on = "batch"`) or image by
    image; image files are decoded in worker processes, and one that does not decode is skipped and counted.
    """
    settings, manifest = job.settings, job.manifest
    order = EpochOrder(settings, split.labels, manifest.num_classes, job.world)
    if not split.files and settings.data.augment_on == "batch":
        dataset = split.dataset
        assert isinstance(dataset, TensorImages)  # a tensor split opens as TensorImages
        augment = BatchAugment.from_settings(settings.data, manifest.image_size, manifest.mean, manifest.std)
        return DeviceBatches(dataset.images, split.labels, order, augment, job.device)
    workers = resolve_workers(settings.data.num_workers, per_sample=True)
    bad = settings.data.max_bad_fraction if split.files else None
    return SampleBatches(split.dataset, order, workers, job.device, max_bad_fraction=bad)


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
    return {"loss": total / max(seen, 1), "lr": _lr(job), "images_per_s": seen * scale / elapsed}


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
