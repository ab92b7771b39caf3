"""Calibration of predicted probabilities: NLL, expected calibration error and reliability bins."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

ECE_BINS = 15  # Guo et al. (2017)
_PROB_FLOOR = 1e-12  # log of a zero probability would be -inf


class ReliabilityBins(NamedTuple):
    """Equal-width confidence bins (lower, upper]; accuracy and confidence are NaN in empty bins."""

    lower: Tensor
    upper: Tensor
    counts: Tensor  # images per bin
    accuracy: Tensor
    confidence: Tensor


def nll(probs: Tensor, labels: Tensor) -> Tensor:
    """Mean negative log-likelihood of the true labels, with probabilities floored at 1e-12."""
    true_prob = probs.to(torch.float64).gather(1, labels[:, None]).squeeze(1)
    return -true_prob.clamp_min(_PROB_FLOOR).log().mean()


def reliability_bins(probs: Tensor, labels: Tensor, n_bins: int = ECE_BINS) -> ReliabilityBins:
    """Bin samples by max-probability confidence into n_bins equal-width bins over (0, 1]."""
    confidence, preds = probs.to(torch.float64).max(dim=1)
    correct = (preds == labels).to(torch.float64)
    edges = torch.linspace(0.0, 1.0, n_bins + 1, dtype=torch.float64)
    index = (torch.bucketize(confidence, edges, right=False) - 1).clamp(0, n_bins - 1)
    count = torch.bincount(index, minlength=n_bins)
    sums = count.to(torch.float64).clamp_min(1.0)
    acc = torch.bincount(index, weights=correct, minlength=n_bins) / sums
    conf = torch.bincount(index, weights=confidence, minlength=n_bins) / sums
    empty = count == 0
    acc, conf = acc.masked_fill(empty, torch.nan), conf.masked_fill(empty, torch.nan)
    return ReliabilityBins(edges[:-1], edges[1:], count, acc, conf)


def ece_from_bins(bins: ReliabilityBins) -> Tensor:
    """ECE = sum_b |B_b|/n * |acc(B_b) - conf(B_b)| over the non-empty bins."""
    weight = bins.counts.to(torch.float64) / bins.counts.sum().clamp_min(1)
    gap = (bins.accuracy - bins.confidence).abs().nan_to_num(0.0)
    return (weight * gap).sum()
