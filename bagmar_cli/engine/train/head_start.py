"""The cosine head's start on a fresh run (`model.head_init`): the math is `models.head_init`'s, the data is here.

class_mean: one pass over the training split with the evaluation preprocessing (no augmentation, the run's own
normalisation); text: the manifest's class names. A resumed run keeps its checkpoint's head, and no head comes
from `model.weights` (only the backbone's tensors load), so every fresh start begins here.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch

from bagmar_cli.console import info
from bagmar_cli.data.splits import eval_loader, open_eval_split
from bagmar_cli.engine.batches import resolve_workers
from bagmar_cli.models.head_init import init_class_mean, init_text

if TYPE_CHECKING:
    from bagmar_cli.engine.train.build import Job


def start_head(job: Job) -> None:
    """Write the head `job.settings.model.head_init` asks for into `job.model` ("random": leave it)."""
    settings = job.settings.model
    if settings.head_init == "class_mean":
        counts = init_class_mean(job.model, _train_batches(job))
        if job.world.is_main:
            empty = int((counts == 0).sum())
            kept = f"; {empty} classes without an image keep their random row" if empty else ""
            info(f"head started from the class means of {int(counts.sum())} training images{kept}")
    elif settings.head_init == "text":
        init_text(job.model, settings, job.manifest.classes)
        if job.world.is_main:
            info(f"head started from {settings.text_model} text features of {len(job.manifest.classes)} class names")


def _train_batches(job: Job) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The training split as evaluation sees a split (centre crop, normalised), in order, on the job's device."""
    split = open_eval_split(job.root, "train", job.preprocess, job.inputs.mean, job.inputs.std)
    workers = resolve_workers(job.settings.data.num_workers, per_sample=True) if split.files else 0
    for batch in eval_loader(split.dataset, job.settings.eval.batch_size, workers):
        yield batch.images.to(job.device), batch.labels.to(job.device)
