"""Classifier heads, kept apart from the backbone so post-hoc methods can rescale or replace them."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class NormedLinear(nn.Module):
    """Cosine classifier: logits are cosines between features and class weights (LDAM, Cao et al. 2019)."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_features, in_features).uniform_(-1, 1).renorm_(2, 0, 1e-5).mul_(1e5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=1) @ F.normalize(self.weight, dim=1).t()


HEADS = {
    "linear": lambda d, c: nn.Linear(d, c),
    "normed": NormedLinear,
}
