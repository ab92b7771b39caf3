"""Batched inference over a split's DataLoader: logits (and features) computed once, on CPU at the end.

Under torch.distributed each rank runs a strided shard of the split (items rank, rank + W, ...: no padding, no
duplicate) and the shards are gathered back into split order, so every rank holds what one process would compute.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Subset

from bagmar_cli.data.images import Batch, EvalPreprocess
from bagmar_cli.data.splits import OpenedSplit, eval_loader, open_eval_split
from bagmar_cli.engine import distributed
from bagmar_cli.engine.evaluate.tta import TTAPlan, tta_preprocess
from bagmar_cli.errors import DatasetError
from bagmar_cli.models import Classifier


@dataclass
class Outputs:
    """A model's logits (N, C), labels (N,) and, when asked, pooled features (N, D) on a split, in split order."""

    logits: Tensor
    labels: Tensor
    features: Tensor | None


@torch.no_grad()
def compute_outputs(
    model: Classifier,
    loader: DataLoader[Batch],
    *,
    device: torch.device | str = "cpu",
    features: bool = False,
    tta: TTAPlan | None = None,
) -> Outputs:
    """Run `model` in eval mode over the `Batch`es of `loader`; an image that fails to decode is a DatasetError.

    Evaluation refuses to skip: a report over a silently smaller split would not be the split's report. Under
    `tta` the logits (and features) are the means over the plan's views.
    """
    was_training = model.training
    model.eval()
    logits, labels, feats = [], [], []
    try:
        for batch in loader:
            if batch.failed:
                bad = batch.failed[0]
                raise DatasetError(
                    f"cannot decode {bad.path} ({bad.reason}); evaluation reads every image of the split: "
                    "replace or remove the file and prepare the dataset again"
                )
            feature, logit = _forward(model, batch.images.to(device, non_blocking=True), tta)
            logits.append(logit.float().cpu())
            labels.append(batch.labels)
            if features:
                feats.append(feature.float().cpu())
    finally:
        model.train(was_training)
    if not logits:  # an empty split (or shard)
        classes = model.head.weight.shape[0]
        return Outputs(
            torch.empty(0, classes), torch.empty(0, dtype=torch.int64), torch.empty(0, 0) if features else None
        )
    return Outputs(torch.cat(logits), torch.cat(labels), torch.cat(feats) if features else None)


def _forward(model: Classifier, images: Tensor, tta: TTAPlan | None) -> tuple[Tensor, Tensor]:
    """(features, logits) of a batch: the model's, or their means over the views of `tta` (tta_logits' mean)."""
    if tta is None:
        feature = model.features(images)
        return feature, model.head(feature)
    pairs = [(feature, model.head(feature)) for feature in map(model.features, tta.views_of(images))]
    return torch.stack([f for f, _ in pairs]).mean(0), torch.stack([logit for _, logit in pairs]).mean(0)


def split_outputs_of(
    model: Classifier,
    root: Path,
    split: str,
    *,
    preprocess: EvalPreprocess | None,
    mean: list[float],
    std: list[float],
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    workers: int = 0,
    features: bool = False,
    tta: TTAPlan | None = None,
) -> Outputs:
    """`model`'s outputs on `split` of the dataset in `root`, preprocessed as the model records (open_eval_split),
    or as `tta` reads images (`tta_preprocess`)."""
    opened = open_eval_split(root, split, tta_preprocess(preprocess, tta), mean, std)
    loader = eval_loader(opened.dataset, batch_size, workers if opened.files else 0)  # tensors: whole batches at once
    return compute_outputs(model, loader, device=device, features=features, tta=tta)


def sharded_outputs(
    model: Classifier,
    opened: OpenedSplit,
    world: distributed.World,
    *,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    workers: int = 0,
) -> Outputs:
    """Logits and labels of the whole split on every rank, each rank having run only its strided shard."""
    if world.size == 1:
        return compute_outputs(model, eval_loader(opened.dataset, batch_size, workers), device=device)
    shard = Subset(opened.dataset, range(world.rank, len(opened.labels), world.size))
    mine = compute_outputs(model, eval_loader(shard, batch_size, workers), device=device)
    logits = distributed.gather_strided(mine.logits, len(opened.labels), world, device)
    labels = distributed.gather_strided(mine.labels, len(opened.labels), world, device)
    return Outputs(logits, labels, None)


def first_images(opened: OpenedSplit, n: int) -> Tensor:
    """The first `n` preprocessed images of a split (fewer if it is smaller), as one batch."""
    loader = eval_loader(Subset(opened.dataset, range(min(n, len(opened.labels)))), max(n, 1))
    batches = list(loader)
    for batch in batches:
        if batch.failed:
            raise DatasetError(f"cannot decode {batch.failed[0].path} ({batch.failed[0].reason})")
    return torch.cat([batch.images for batch in batches]) if batches else torch.empty(0)
