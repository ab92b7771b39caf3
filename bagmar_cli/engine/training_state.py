"""What a training checkpoint holds beyond the model, and how a job resumes from it.

The metadata schema is `checkpoint_meta.CheckpointMeta`; this module fills it from a training job (model, loss
statistics, optimiser slots, schedule, RNG streams, progress) and puts a job back where a checkpoint left it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from bagmar_cli.checkpoint import file_sha256, load_checkpoint
from bagmar_cli.checkpoint_meta import CheckpointMeta, DatasetRef, ModelSpec
from bagmar_cli.engine.runtime import capture_rng, restore_rng
from bagmar_cli.engine.schedule import load_scheduler_state, scheduler_state
from bagmar_cli.errors import CheckpointError

if TYPE_CHECKING:
    from bagmar_cli.engine.build import Job


@dataclass
class TrainingProgress:
    """Where training stands: epochs done, best validation top-1 and its epoch."""

    epoch: int = 0
    best_top1: float = -1.0
    best_epoch: int = 0


def training_checkpoint(job: Job, record: dict[str, Any]) -> tuple[dict[str, torch.Tensor], CheckpointMeta]:
    """The checkpoint's tensors (model, loss, EMA, optimiser, RNG) and metadata (see README, Checkpoints)."""
    tensors = {f"model.{k}": v for k, v in job.model.state_dict().items()}
    tensors |= {f"loss.{k}": v for k, v in job.loss_fn.state_dict().items()}
    if job.ema is not None:
        tensors |= {f"ema.{k}": v for k, v in job.ema.module.state_dict().items()}
    optim_state = job.optimizer.state_dict()
    for index, slots in optim_state["state"].items():
        tensors |= {f"optim.{index}.{name}": value for name, value in slots.items() if torch.is_tensor(value)}
    rng_tensors, rng_meta = capture_rng()
    tensors |= rng_tensors
    m, state, settings = job.manifest, job.state, job.settings
    meta = CheckpointMeta(
        settings=settings,
        model=ModelSpec(
            backbone=settings.model.backbone,
            head=settings.model.head,
            num_classes=m.num_classes,
            input_size=job.input_size,
            mean=list(m.mean),
            std=list(m.std),
            preprocess=job.preprocess,
        ),
        classes=list(m.classes),
        train_counts=list(job.counts),
        dataset=DatasetRef(
            name=m.dataset,
            root=str(Path(job.root).resolve()),
            manifest_sha256=file_sha256(Path(job.root) / "manifest.json"),
        ),
        epoch=state.epoch,
        best={"epoch": state.best_epoch, "top1": state.best_top1, "split": job.val_name},
        selection_split=job.val_name,
        metrics=record,
        optimizer_param_groups=optim_state["param_groups"],
        scheduler=scheduler_state(job.scheduler),
        rng=rng_meta,
    )
    return tensors, meta


def restore_training(job: Job, path: Path) -> TrainingProgress:
    """Load into `job` everything resuming needs from `path` (last.safetensors); returns the progress it records."""
    ckpt = load_checkpoint(path)
    meta = ckpt.meta
    if meta.epoch is None or meta.scheduler is None or meta.rng is None:
        raise CheckpointError(f"{path} records no training state (epoch, scheduler, RNG): it cannot be resumed")
    job.model.load_state_dict(ckpt.section("model"))
    job.loss_fn.load_state_dict(ckpt.section("loss"))
    if job.ema is not None:
        job.ema.module.load_state_dict(ckpt.section("ema"))
    slots: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in ckpt.section("optim").items():
        index, name = key.split(".", 1)
        slots.setdefault(int(index), {})[name] = value
    job.optimizer.load_state_dict({"state": slots, "param_groups": meta.optimizer_param_groups})
    load_scheduler_state(job.scheduler, meta.scheduler)
    restore_rng(ckpt.tensors, meta.rng)
    best_top1, best_epoch = (meta.best.top1, meta.best.epoch) if meta.best else (-1.0, 0)
    return TrainingProgress(meta.epoch, best_top1, best_epoch)
