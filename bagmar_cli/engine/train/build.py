"""What one training process holds (`Job`) and how it is built from the settings: seed, model, loss, optimiser,
schedule, and the data it trains and selects on."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, cast

import torch
from timm.utils.model_ema import ModelEmaV3
from torch import nn
from torch.optim.lr_scheduler import LRScheduler

from bagmar_cli.console import info, warn
from bagmar_cli.data import Manifest
from bagmar_cli.data.augment.batch import BatchAugment
from bagmar_cli.data.augment.images import image_train_transform
from bagmar_cli.data.augment.tensors import TensorImages, train_transform
from bagmar_cli.data.images import EvalPreprocess
from bagmar_cli.data.splits import OpenedSplit, is_file_list, open_eval_split
from bagmar_cli.engine import distributed
from bagmar_cli.engine.batches import DeviceBatches, EpochOrder, SampleBatches, process_batch, resolve_workers
from bagmar_cli.engine.restore import evaluation_split
from bagmar_cli.engine.runtime import seed_everything
from bagmar_cli.engine.train.head_start import start_head
from bagmar_cli.engine.train.inputs import RunInputs, run_inputs
from bagmar_cli.engine.train.optimizer import build_optimizer, lr_rule_line
from bagmar_cli.engine.train.schedule import build_scheduler
from bagmar_cli.engine.train.step import build_ema, prepare_model
from bagmar_cli.errors import SettingError
from bagmar_cli.losses import ClassWeightedLoss, build_loss
from bagmar_cli.models import Classifier, build_model
from bagmar_cli.models.finetune import parameter_counts
from bagmar_cli.models.freeze import train_only
from bagmar_cli.settings import DataSettings, ModelSettings, Settings


def selection_split(data: DataSettings, manifest: Manifest) -> str:
    """The split for best-epoch selection: `val` when the dataset has one (auto), else `test`."""
    if data.val_split != "auto":
        if data.val_split not in manifest.splits:
            raise SettingError(f"data.val_split {data.val_split!r} not in the dataset (has {sorted(manifest.splits)})")
        return data.val_split
    return evaluation_split(manifest)


def check_frozen_start(model: ModelSettings, world: distributed.World) -> None:
    """A frozen backbone must start from weights: random features that never learn are no classifier re-training."""
    if model.freeze == "none" or model.pretrained or model.weights is not None:
        return
    if model.freeze == "backbone":
        raise SettingError(
            'model.freeze = "backbone" keeps the backbone as it starts, and nothing gives it weights: set '
            "`model.weights` to a file (a stage-1 checkpoint or a timm state dict) or `model.pretrained` to true"
        )
    if world.is_main:
        warn(
            f'model.freeze = "{model.freeze}" keeps randomly initialised layers frozen: no model.weights or pretrained'
        )


@dataclass
class TrainingProgress:
    """Where training stands: epochs done, best validation top-1 and its epoch."""

    epoch: int = 0
    best_top1: float = -1.0
    best_epoch: int = 0


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
    later_steps: int = 0  # optimiser steps of the stages after this one (the whole run's ETA counts them)

    @property
    def eval_model(self) -> Classifier:
        """The weights validation scores (and eval/export use by default): the EMA's when train.ema is on."""
        return cast(Classifier, self.ema.module) if self.ema is not None else self.model  # EMA: a deep copy of it

    @cached_property
    def inputs(self) -> RunInputs:
        """What the network sees: the backbone's data config when it brings pretrained weights (a bagmar checkpoint's
        record when it comes from one), else the dataset's (engine/train/inputs.py)."""
        return run_inputs(self.settings, self.manifest)

    @property
    def preprocess(self) -> EvalPreprocess | None:
        """Image files: the evaluation preprocessing (recorded in checkpoints); None for tensor datasets."""
        return self.inputs.preprocess

    @property
    def input_size(self) -> list[int]:
        """[C, H, W] the network sees: the crop of image files, else the tensors' size."""
        return [self.manifest.image_size[0], *self.inputs.size]

    @property
    def counts(self) -> list[int]:
        return self.manifest.splits["train"].counts


def is_image_files(manifest: Manifest) -> bool:
    return is_file_list(manifest, "train")


def steps_per_epoch(settings: Settings, manifest: Manifest, world: distributed.World) -> int:
    """Optimiser steps in one epoch: the batches of the sampler's epoch (the schedule is stated per step)."""
    counts = torch.tensor(manifest.splits["train"].counts)
    labels = torch.repeat_interleave(torch.arange(len(counts)), counts)
    return len(EpochOrder(settings, labels, manifest.num_classes, world))


def build(
    settings: Settings,
    root: Path,
    manifest: Manifest,
    device: torch.device,
    world: distributed.World,
    *,
    resuming: bool = False,
) -> Job:
    """Seed, then create the model (what trains: `models.freeze.train_only`; its head started as `model.head_init`
    says), loss, SGD and schedule the settings describe (a resumed model takes its weights from the checkpoint, so
    pretrained or `model.weights` files are not read again, nor is the head started again)."""
    seed_everything(settings.train.seed + world.rank)
    model_settings = settings.model
    if resuming:
        model_settings = model_settings.model_copy(update={"pretrained": False, "weights": None})
    built = build_model(model_settings, manifest.num_classes, manifest.image_size[0])
    frozen_norms = train_only(built, settings.model)
    trainable, total = parameter_counts(built)
    if world.is_main:
        info(parameters_line(trainable, total))
    model = prepare_model(built, settings.train).to(device)
    loss_fn = build_loss(settings.loss, manifest.splits["train"].counts, settings.model.head_scale).to(device)
    batch = process_batch(settings.train.batch_size, world.size) * world.size  # the images one step averages over
    optimizer = build_optimizer(model, settings.optim, batch)  # the schedule starts from its (maybe scaled) lrs
    if world.is_main and (rule := lr_rule_line(settings.optim, batch, world.size)):
        info(rule)
    steps = steps_per_epoch(settings, manifest, world)
    scheduler = build_scheduler(optimizer, settings.schedule, settings.train.epochs, steps)
    val_name = selection_split(settings.data, manifest)
    job = Job(
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
        still_norms=frozen_norms if settings.model.frozen_bn == "eval" else [],
    )
    if not resuming:  # a resumed head is the checkpoint's
        start_head(job)
    job.ema = build_ema(model, settings.train)  # after the head's start: the average starts from it
    return job


def parameters_line(trainable: int, total: int) -> str:
    """The run's first word on what it trains: "trainable 0.44 M of 86.3 M parameters (0.51 %)"."""
    return (
        f"trainable {trainable / 1e6:.3g} M of {total / 1e6:.3g} M parameters ({100 * trainable / max(total, 1):.2f} %)"
    )


def train_transform_of(job: Job) -> Any:
    """The training augmentation: timm's large-scale recipe for image files (small ones padded and cropped), the CIFAR
    recipe for tensors."""
    if job.preprocess is not None:
        return image_train_transform(job.settings.data, job.preprocess, native_size=job.manifest.native_size)
    return train_transform(job.settings.data, job.manifest.image_size, job.inputs.mean, job.inputs.std)


def open_selection_split(job: Job) -> OpenedSplit:
    """The selection split, preprocessed as `bagmar eval` will preprocess it for the checkpoint."""
    return open_eval_split(job.root, job.val_name, job.preprocess, job.inputs.mean, job.inputs.std)


def batch_source(job: Job, split: OpenedSplit) -> DeviceBatches | SampleBatches:
    """The run's batch source; each epoch's order is a function of (seed, epoch), so resume replays it.

    In-memory splits are augmented a batch at a time on the device (`data.augment_on = "batch"`) or image by
    image; image files are decoded in worker processes, and one that does not decode is skipped and counted.
    """
    settings, manifest = job.settings, job.manifest
    order = EpochOrder(settings, split.labels, manifest.num_classes, job.world)
    if not split.files and settings.data.augment_on == "batch":
        dataset = split.dataset
        assert isinstance(dataset, TensorImages)  # a tensor split opens as TensorImages
        augment = BatchAugment.from_settings(settings.data, manifest.image_size, job.inputs.mean, job.inputs.std)
        return DeviceBatches(dataset.images, split.labels, order, augment, job.device)
    workers = resolve_workers(settings.data.num_workers, per_sample=True)
    bad = settings.data.max_bad_fraction if split.files else None
    return SampleBatches(split.dataset, order, workers, job.device, max_bad_fraction=bad)
