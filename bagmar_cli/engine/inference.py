"""Batched inference over a uint8 image tensor: logits (and features) computed once, on CPU at the end."""

from __future__ import annotations

import torch

from bagmar_cli.data.transforms import eval_transform
from bagmar_cli.models import Classifier


@torch.no_grad()
def compute_outputs(
    model: Classifier,
    images: torch.Tensor,
    mean: list[float],
    std: list[float],
    *,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    features: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Logits (N, C) and, if asked, pooled features (N, D) for images (N, C, H, W) uint8."""
    was_training = model.training
    model.eval()
    normalise = eval_transform(mean, std)
    logits, feats = [], []
    for start in range(0, len(images), batch_size):
        batch = normalise(images[start : start + batch_size]).to(device)
        feature = model.features(batch)
        logits.append(model.head(feature).float().cpu())
        if features:
            feats.append(feature.float().cpu())
    model.train(was_training)
    if not logits:  # an empty split
        return torch.empty(0, model.head.weight.shape[0]), torch.empty(0, 0) if features else None
    return torch.cat(logits), torch.cat(feats) if features else None
