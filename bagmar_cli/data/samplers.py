"""Training samplers: instance-balanced (plain shuffling), class-balanced and square-root sampling."""

from __future__ import annotations

import torch
from torch.utils.data import Sampler, WeightedRandomSampler

from bagmar_cli.choices import did_you_mean
from bagmar_cli.errors import UsageError

# kind -> q in p_j ∝ n_j^q, the chance of drawing class j (Kang et al. 2020); None: plain shuffling (q = 1).
SAMPLERS: dict[str, float | None] = {"instance": None, "class": 0.0, "sqrt": 0.5}


def sample_weights(labels: torch.Tensor, num_classes: int, q: float) -> torch.Tensor:
    """Per-image weights n_y^(q-1), so that class j is drawn with probability ∝ n_j^q."""
    counts = torch.bincount(labels, minlength=num_classes).double()
    return counts[labels] ** (q - 1)


def make_sampler(
    kind: str, labels: torch.Tensor, num_classes: int, generator: torch.Generator | None = None
) -> Sampler[int] | None:
    """The sampler for `kind`, drawing len(labels) indices per epoch with replacement; None for "instance"."""
    if kind not in SAMPLERS:
        hint = did_you_mean(kind, SAMPLERS, quote=False)
        raise UsageError(f"unknown sampler {kind!r}{hint}; choose from {', '.join(SAMPLERS)}")
    q = SAMPLERS[kind]
    if q is None:
        return None
    weights = sample_weights(labels, num_classes, q)
    return WeightedRandomSampler(weights, num_samples=len(labels), replacement=True, generator=generator)  # type: ignore[arg-type]  # torch types `weights` as Sequence[float] but takes a Tensor (torch.as_tensor)
