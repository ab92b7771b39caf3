"""Classifier heads, kept apart from the backbone so post-hoc methods can rescale or replace them."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


class NormedLinear(nn.Module):
    """Cosine classifier (LDAM, Cao et al. 2019): logits are `scale` times the cosines between features
    and class weights. The scale is the softmax temperature that evaluation, PN and export see."""

    def __init__(self, in_features: int, out_features: int, scale: float = 1.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_features, in_features).uniform_(-1, 1).renorm_(2, 0, 1e-5).mul_(1e5))
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cosines = F.normalize(x, dim=1) @ F.normalize(self.weight, dim=1).t()
        return cosines if self.scale == 1.0 else cosines * self.scale

    def extra_repr(self) -> str:
        return f"in_features={self.weight.shape[1]}, out_features={self.weight.shape[0]}, scale={self.scale:g}"


def linear(in_features: int, out_features: int, scale: float = 1.0) -> nn.Linear:
    """Plain linear classifier; a scale other than 1 is refused by the settings."""
    return nn.Linear(in_features, out_features)


Head = nn.Linear | NormedLinear
"""A classifier head: features -> logits through one weight matrix (num_classes, num_features)."""

HEADS: dict[str, Callable[[int, int, float], Head]] = {
    "linear": linear,
    "normed": NormedLinear,
}
