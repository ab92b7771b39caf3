"""Class priors: the training prior and the shifted test priors of SADE's test-agnostic protocol."""

from __future__ import annotations

import torch
from torch import Tensor

SHIFT_RATIOS: tuple[int, ...] = (50, 25, 10, 5, 2)
"""Imbalance ratios rho of the shifted test sets (Zhang et al. 2022, SADE)."""


def class_prior(counts: Tensor) -> Tensor:
    """Training prior pi_j = n_j / N, with empty classes counted once so log(pi) stays finite."""
    counts = counts.to(torch.float64).clamp_min(1.0)
    return counts / counts.sum()


def long_tailed_prior(num_classes: int, ratio: float, *, backward: bool = False) -> Tensor:
    """Prior q_j proportional to ratio^(-j/(C-1)): class 0 most frequent, or reversed when backward."""
    if num_classes == 1:
        return torch.ones(1, dtype=torch.float64)
    j = torch.arange(num_classes, dtype=torch.float64)
    if backward:
        j = j.flip(0)
    q = float(ratio) ** (-j / (num_classes - 1))
    return q / q.sum()


def shifted_priors(num_classes: int, ratios: tuple[int, ...] = SHIFT_RATIOS) -> dict[str, Tensor]:
    """Test priors from forward-50 through uniform to backward-50, in the order SADE tabulates them."""
    priors = {f"forward-{r}": long_tailed_prior(num_classes, r) for r in sorted(ratios, reverse=True)}
    priors["uniform"] = torch.full((num_classes,), 1.0 / num_classes, dtype=torch.float64)
    for r in sorted(ratios):
        priors[f"backward-{r}"] = long_tailed_prior(num_classes, r, backward=True)
    return priors


def frequency_order(train_counts: Tensor) -> Tensor:
    """Class indices sorted by training count, most frequent first (stable for ties)."""
    return torch.sort(train_counts.to(torch.float64), descending=True, stable=True).indices


def prior_weighted_accuracy(per_class_acc: Tensor, prior: Tensor) -> float:
    """Expected accuracy sum_j q_j acc_j; classes with NaN accuracy are dropped and q renormalised."""
    acc = per_class_acc.to(torch.float64)
    q = prior.to(torch.float64) * ~acc.isnan()
    total = q.sum()
    if total <= 0:
        return float("nan")
    return float((q * acc.nan_to_num(0.0)).sum() / total)


def shifted_prior_accuracies(
    per_class_acc: Tensor,
    train_counts: Tensor | None = None,
    ratios: tuple[int, ...] = SHIFT_RATIOS,
) -> dict[str, float]:
    """Accuracy under each shifted test prior; the long tail follows class index, or train_counts if given."""
    num_classes = per_class_acc.numel()
    acc = per_class_acc if train_counts is None else per_class_acc[frequency_order(train_counts)]
    return {name: prior_weighted_accuracy(acc, q) for name, q in shifted_priors(num_classes, ratios).items()}
