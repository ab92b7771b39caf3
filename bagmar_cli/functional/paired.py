"""Paired comparison of two classifiers (or two groups of seeds) scored on the same test images.

Top-1, macro and many/medium/few accuracy are linear in each image's correctness once every class keeps its test
count, so a bootstrap that resamples images within each class (stratified) only has to draw, per class, the summed
correctness of n_c images drawn with replacement. The draws are made for all resamples at once, in blocks that bound
memory; nothing loops over resamples in Python.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from bagmar_cli.functional.metrics import GROUPS, shot_groups

METRICS = ("top1", "macro", *GROUPS)
BLOCK_CELLS = 1 << 22  # random draws per block: bounds the memory of a block to a few tens of MB
PAIR_TABLE_MAX = 1 << 22  # most entries of per-class pair-sum tables (over all packs) worth building


@dataclass(frozen=True)
class MetricComparison:
    """One metric of a paired comparison: both values, B subtracted from A, its interval and p-value."""

    a: float | None
    b: float | None
    diff: float | None
    ci: tuple[float, float] | None
    p_value: float | None
    test: str  # which test gave p_value
    a_seeds: list[float | None] | None = None  # per-seed values (groups of seeds only)
    b_seeds: list[float | None] | None = None

    def distinguishable(self) -> bool | None:
        """Whether the interval excludes 0 (None when the metric is undefined here)."""
        return None if self.ci is None else self.ci[0] > 0 or self.ci[1] < 0


def metric_class_weights(labels: Tensor, train_counts: Tensor) -> tuple[Tensor, Tensor]:
    """(M, C) weights with metric m = W[m] @ per-class accuracy, and which metrics are defined on these labels.

    Rows follow METRICS: top-1 weighs a class by its share of the test images, macro and each shot group average
    the classes that have test images (the groups from `metrics.shot_groups`).
    """
    num_classes = train_counts.numel()
    n_c = torch.bincount(labels, minlength=num_classes).to(torch.float64)
    present = n_c > 0
    groups = shot_groups(train_counts)
    masks = [present, *(groups[name] & present for name in GROUPS)]
    rows = [n_c / n_c.sum().clamp_min(1.0)] + [mask.to(torch.float64) / mask.sum().clamp_min(1) for mask in masks]
    defined = torch.tensor([bool(present.any())] + [bool(mask.any()) for mask in masks])
    return torch.stack(rows), defined


def seed_metrics(correct: Tensor, labels: Tensor, weights: Tensor) -> Tensor:
    """(S, M) metrics of S models from their (S, N) correctness on images labelled `labels`."""
    num_classes = weights.shape[1]
    n_c = torch.bincount(labels, minlength=num_classes).to(torch.float64).clamp_min(1.0)
    flat = labels[None, :] + num_classes * torch.arange(correct.shape[0])[:, None]
    right = torch.bincount(flat[correct.bool()], minlength=num_classes * correct.shape[0]).to(torch.float64)
    return (right.view(correct.shape[0], num_classes) / n_c) @ weights.T


def mcnemar_p(a_only: int, b_only: int) -> float:
    """Exact two-sided McNemar p-value: the discordant images follow Binomial(a_only + b_only, 1/2) under H0."""
    n = a_only + b_only
    if n == 0:
        return 1.0
    k = torch.arange(min(a_only, b_only) + 1, dtype=torch.float64)
    log_terms = (
        torch.lgamma(torch.tensor(n + 1.0, dtype=torch.float64))
        - torch.lgamma(k + 1)
        - torch.lgamma(n - k + 1)
        - n * math.log(2)
    )
    return min(1.0, 2.0 * math.exp(float(torch.logsumexp(log_terms, 0))))


def mcnemar(correct_a: Tensor, correct_b: Tensor) -> float:
    """Exact McNemar p-value for top-1 of two models' (N,) correctness on the same images."""
    a, b = correct_a.bool(), correct_b.bool()
    return mcnemar_p(int((a & ~b).sum()), int((~a & b).sum()))


def permutation_p(
    correct_a: Tensor, correct_b: Tensor, labels: Tensor, weights: Tensor, resamples: int, generator: torch.Generator
) -> Tensor:
    """(M,) paired permutation p-values: under H0 each image's two outcomes are exchangeable, so swap them at random.

    Only discordant images change under a swap; for top-1 this is McNemar's test, drawn instead of enumerated.
    """
    a, b = correct_a.bool(), correct_b.bool()
    discordant = a != b
    n_c = torch.bincount(labels, minlength=weights.shape[1]).to(torch.float64).clamp_min(1.0)
    contrib = (a[discordant].double() - b[discordant].double()) * (
        weights[:, labels[discordant]] / n_c[labels[discordant]]
    )
    observed = contrib.sum(dim=1).abs()
    extreme = torch.zeros(weights.shape[0], dtype=torch.int64)
    for size in _blocks(resamples, contrib.shape[1]):
        signs = torch.rand(size, contrib.shape[1], generator=generator, dtype=torch.float64).lt(0.5).double() * 2 - 1
        extreme += ((signs @ contrib.T).abs() >= observed - 1e-12).sum(dim=0)
    return (1.0 + extreme) / (1.0 + resamples)


def bootstrap_differences(
    correct_a: Tensor,
    correct_b: Tensor,
    labels: Tensor,
    weights: Tensor,
    resamples: int,
    generator: torch.Generator,
) -> Tensor:
    """(R, M) bootstrap draws of mean(A seeds) - mean(B seeds), hierarchical: resample seeds, then images.

    Each side's seeds are drawn with replacement (a single seed is kept as is); the images are one stratified
    resample shared by both sides, so the comparison stays paired. correct_a is (Sa, N), correct_b (Sb, N).
    """
    counts_draw = _ClassSums(torch.cat([correct_a.bool(), correct_b.bool()]), labels, weights.shape[1])
    n_c = torch.bincount(labels, minlength=weights.shape[1]).to(torch.float64).clamp_min(1.0)
    sides = correct_a.shape[0]
    out = []
    for size in _blocks(resamples, counts_draw.slots):
        pick_a = _seed_weights(correct_a.shape[0], size, generator)
        pick_b = _seed_weights(correct_b.shape[0], size, generator)
        metrics = torch.einsum("rcs,mc->rsm", counts_draw.draw(size, generator) / n_c[None, :, None], weights)
        a = torch.einsum("rs,rsm->rm", pick_a, metrics[:, :sides])
        b = torch.einsum("rs,rsm->rm", pick_b, metrics[:, sides:])
        out.append(a - b)
    return torch.cat(out)


def percentile_interval(draws: Tensor, level: float) -> Tensor:
    """(M, 2) central percentile interval of (R, M) bootstrap draws at confidence `level`."""
    tail = (1.0 - level) / 2
    return torch.quantile(draws, torch.tensor([tail, 1.0 - tail], dtype=draws.dtype), dim=0).T


def bootstrap_p(draws: Tensor) -> Tensor:
    """(M,) two-sided bootstrap p-values: twice the smaller share of draws on either side of 0 (at most 1).

    It is the smallest 1 - level whose percentile interval reaches 0, so it agrees with the interval.
    """
    below = (draws <= 0).double().mean(dim=0)
    above = (draws >= 0).double().mean(dim=0)
    return torch.clamp(2 * torch.minimum(below, above), max=1.0)


def compare_correct(
    correct_a: Tensor,
    correct_b: Tensor,
    labels: Tensor,
    train_counts: Tensor,
    *,
    resamples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, MetricComparison]:
    """Each metric of METRICS compared between A (Sa, N) and B (Sb, N) correctness on the same labelled images.

    One model a side: stratified paired bootstrap interval, exact McNemar p for top-1, paired permutation p for
    the rest. Several seeds a side: hierarchical bootstrap interval and its p-value for every metric.
    """
    correct_a, correct_b = _as_seeds(correct_a), _as_seeds(correct_b)
    weights, defined = metric_class_weights(labels, train_counts)
    generator = torch.Generator().manual_seed(seed)
    values_a = seed_metrics(correct_a, labels, weights)
    values_b = seed_metrics(correct_b, labels, weights)
    draws = bootstrap_differences(correct_a, correct_b, labels, weights, resamples, generator)
    interval = percentile_interval(draws, level)
    groups = correct_a.shape[0] > 1 or correct_b.shape[0] > 1
    if groups:
        p_values, tests = bootstrap_p(draws), ["hierarchical bootstrap"] * len(METRICS)
    else:
        p_values = permutation_p(correct_a[0], correct_b[0], labels, weights, resamples, generator)
        p_values[0] = mcnemar(correct_a[0], correct_b[0])
        tests = ["exact McNemar"] + ["paired permutation"] * (len(METRICS) - 1)
    results = {}
    for m, name in enumerate(METRICS):
        if not defined[m]:
            results[name] = MetricComparison(None, None, None, None, None, tests[m])
            continue
        a, b = float(values_a[:, m].mean()), float(values_b[:, m].mean())
        results[name] = MetricComparison(
            a,
            b,
            a - b,
            (float(interval[m, 0]), float(interval[m, 1])),
            float(p_values[m]),
            tests[m],
            values_a[:, m].tolist() if groups else None,
            values_b[:, m].tolist() if groups else None,
        )
    return results


def _as_seeds(correct: Tensor) -> Tensor:
    """(N,) -> (1, N); (S, N) kept."""
    return correct.bool()[None] if correct.dim() == 1 else correct.bool()


def _blocks(resamples: int, cells: int) -> list[int]:
    """Resample counts of successive blocks, each drawing at most about BLOCK_CELLS random numbers."""
    size = max(1, BLOCK_CELLS // max(cells, 1))
    return [min(size, resamples - start) for start in range(0, resamples, size)]


def _seed_weights(seeds: int, resamples: int, generator: torch.Generator) -> Tensor:
    """(R, S) share of each seed in a resample of the seeds with replacement; a single seed always counts fully."""
    if seeds == 1:
        return torch.ones(resamples, 1, dtype=torch.float64)
    picks = torch.randint(seeds, (resamples, seeds), generator=generator)
    return torch.nn.functional.one_hot(picks, seeds).sum(dim=1).double() / seeds


class _ClassSums:
    """Draws, per class, the per-model sums of n_c images' correctness resampled with replacement within the class.

    Each image's correctness under all S models is packed into one int64 as digits of base max(n_c) + 1, so one
    gather and one sum per class add S counts at once. Where the tables stay small, a draw picks an ordered pair
    of a class's images from a table of pair sums, which halves the random numbers and gathers.
    """

    def __init__(self, correct: Tensor, labels: Tensor, num_classes: int) -> None:
        order = torch.argsort(labels, stable=True)
        self.num_classes, self.seeds = num_classes, correct.shape[0]
        n_c = torch.bincount(labels, minlength=num_classes)
        start = torch.cumsum(n_c, 0) - n_c
        self.base = max(2, int(n_c.max()) + 1 if labels.numel() else 0)  # digits of base 1 would never end
        self.per_pack = _digits_per_int64(self.base)
        codes = [
            _pack(correct[first : first + self.per_pack, order], self.base)
            for first in range(0, self.seeds, self.per_pack)
        ]
        pairs = int((n_c * n_c).sum()) * len(codes) <= PAIR_TABLE_MAX
        self.tables, offset = self._tables(codes, n_c, start, pairs)
        self._slots(n_c, start, offset, pairs)

    @property
    def slots(self) -> int:
        """Random draws per resample."""
        return self.slot_class.numel()

    def _tables(self, codes: list[Tensor], n_c: Tensor, start: Tensor, pairs: bool) -> tuple[list[Tensor], int]:
        """Per pack: the pair-sum table of every class (when `pairs`), then the single images' codes."""
        if not pairs:
            return codes, 0
        cls = torch.repeat_interleave(torch.arange(self.num_classes), n_c * n_c)
        local = torch.arange(cls.numel()) - (torch.cumsum(n_c * n_c, 0) - n_c * n_c)[cls]
        first, second = start[cls] + local // n_c[cls], start[cls] + local % n_c[cls]
        return [torch.cat([code[first] + code[second], code]) for code in codes], cls.numel()

    def _slots(self, n_c: Tensor, start: Tensor, singles_at: int, pairs: bool) -> None:
        """Each slot of a resample: its class, where its table starts and how many entries it picks from."""
        n_pairs = n_c // 2 if pairs else torch.zeros_like(n_c)
        n_single = n_c - 2 * n_pairs
        pair_start = torch.cumsum(n_c * n_c, 0) - n_c * n_c
        classes = torch.arange(self.num_classes)
        slot_class = torch.cat([classes.repeat_interleave(n_pairs), classes.repeat_interleave(n_single)])
        offset = torch.cat([pair_start.repeat_interleave(n_pairs), (singles_at + start).repeat_interleave(n_single)])
        size = torch.cat([(n_c * n_c).repeat_interleave(n_pairs), n_c.repeat_interleave(n_single)])
        order = torch.argsort(slot_class, stable=True)
        self.slot_class, self.offset, self.size = slot_class[order], offset[order].double(), size[order].double()
        self.last = offset[order] + size[order] - 1

    def draw(self, resamples: int, generator: torch.Generator) -> Tensor:
        """(R, C, S) float64 resampled correct counts per class and model.

        The draws are laid out slot by slot (class-major), so the gathers of one class's resamples stay within
        that class's small table while it is in cache.
        """
        picks = torch.rand(self.slots, resamples, generator=generator, dtype=torch.float64)
        index = torch.addcmul(self.offset[:, None], picks, self.size[:, None]).long()
        index = torch.minimum(index, self.last[:, None]).view(-1)
        digits = []
        for pack, table in enumerate(self.tables):
            sums = torch.zeros(self.num_classes, resamples, dtype=torch.int64)
            sums.index_add_(0, self.slot_class, table.index_select(0, index).view(self.slots, resamples))
            digits.append(_unpack(sums.T, self.base, min(self.per_pack, self.seeds - pack * self.per_pack)))
        return torch.cat(digits, dim=2).double()


def _digits_per_int64(base: int) -> int:
    """How many base-`base` digits fit in a non-negative int64."""
    digits = 1
    while base ** (digits + 1) < 2**63:
        digits += 1
    return digits


def _pack(correct: Tensor, base: int) -> Tensor:
    """(k, N) booleans -> (N,) int64 with model j's bit as digit j in base `base`."""
    powers = torch.tensor([base**j for j in range(correct.shape[0])], dtype=torch.int64)
    return (correct.long() * powers[:, None]).sum(dim=0)


def _unpack(sums: Tensor, base: int, digits: int) -> Tensor:
    """(R, C) int64 sums of packed codes -> (R, C, digits) counts, lowest digit first."""
    counts = []
    for _ in range(digits):
        counts.append(sums % base)
        sums = sums // base
    return torch.stack(counts, dim=2)
