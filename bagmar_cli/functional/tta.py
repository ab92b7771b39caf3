"""Test-time augmentation: logits averaged over views of each image (horizontal flip; five crops).

LIFT's protocol (Shi et al., ICML 2024, "test-time ensembling"): resize to 248, take the four corner crops and the
centre crop of 224, average the logits. `five_crops` takes any crop of an already resized batch; `lift_resize`
scales 248/224 to other crop sizes. Pure: a forward function and tensors in, tensors out.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

LIFT_RESIZE, LIFT_CROP = 248, 224
# `eval.tta` -> (five crops, flip)
TTA_MODES = {"none": (False, False), "flip": (False, True), "five_crop": (True, False), "five_crop_flip": (True, True)}


def lift_resize(crop: int) -> int:
    """The side LIFT resizes to before five crops of `crop` (248 for 224)."""
    return round(crop * LIFT_RESIZE / LIFT_CROP)


def five_crops(x: torch.Tensor, crop: int) -> list[torch.Tensor]:
    """Top-left, top-right, bottom-left, bottom-right and centre `crop` x `crop` crops of an (N, C, H, W) batch."""
    height, width = x.shape[-2:]
    if crop > height or crop > width:
        raise ValueError(f"five crops of {crop} need images of at least that side, got {height}x{width}")
    top, left = (height - crop) // 2, (width - crop) // 2
    corners = [(0, 0), (0, width - crop), (height - crop, 0), (height - crop, width - crop), (top, left)]
    return [x[..., i : i + crop, j : j + crop] for i, j in corners]


def views(x: torch.Tensor, *, crop: int | None = None, flip: bool = False) -> list[torch.Tensor]:
    """The batch's views: five crops of `crop` (or the batch itself), each also flipped left-right if `flip`."""
    base = five_crops(x, crop) if crop is not None else [x]
    return base + [view.flip(-1) for view in base] if flip else base


def tta_logits(
    forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, *, crop: int | None = None, flip: bool = False
) -> torch.Tensor:
    """Mean of `forward`'s logits over the `views` of `x` (the logits of `x` itself when no view is asked)."""
    outputs = [forward(view) for view in views(x, crop=crop, flip=flip)]
    return torch.stack(outputs).mean(0)
