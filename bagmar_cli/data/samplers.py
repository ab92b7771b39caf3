"""Training samplers: one epoch's draw of indices for instance, class-balanced, square-root and class-aware sampling.

Each is a pure function of the labels and a generator, so an epoch's order is a function of (seed, epoch) and
every rank of a multi-process run can draw the same global order and take its own share of it.
"""

from __future__ import annotations

import torch
from torch import Tensor

from bagmar_cli.choices import did_you_mean
from bagmar_cli.errors import SettingError

SAMPLERS = ("instance", "class", "sqrt", "class_aware")
# kind -> q in p_j ∝ n_j^q, the chance of drawing class j (Kang et al. 2020)
SAMPLING_POWER: dict[str, float] = {"class": 0.0, "sqrt": 0.5}


def sample_weights(labels: Tensor, num_classes: int, q: float) -> Tensor:
    """Per-image weights n_y^(q-1), so that class j is drawn with probability ∝ n_j^q."""
    counts = torch.bincount(labels, minlength=num_classes).double()
    return counts[labels] ** (q - 1)


def epoch_length(epoch_size: str, labels: Tensor, num_classes: int) -> int:
    """Draws in one epoch: len(labels) ("dataset"), or the largest class's count times the number of classes with
    images ("max_class": the epoch of Kang et al.'s ClassAwareSampler, a balanced pass as long as the head class)."""
    if epoch_size == "dataset":
        return len(labels)
    counts = torch.bincount(labels, minlength=num_classes)
    return int(counts.max()) * int((counts > 0).sum())


def epoch_indices(
    kind: str,
    labels: Tensor,
    num_classes: int,
    generator: torch.Generator,
    samples_per_class: int = 4,
    size: int | None = None,
) -> Tensor:
    """One epoch's `size` (default len(labels)) indices: a permutation ("instance", len(labels) only), draws with
    replacement by class weight ("class", "sqrt"), or runs of `samples_per_class` images of a uniformly drawn
    class ("class_aware")."""
    if kind not in SAMPLERS:
        hint = did_you_mean(kind, SAMPLERS, quote=False)
        raise SettingError(f"unknown sampler {kind!r}{hint}; choose from {', '.join(SAMPLERS)}")
    size = len(labels) if size is None else size
    if kind == "instance":
        if size != len(labels):
            raise ValueError(f"a permutation has {len(labels)} indices, not {size}")
        return torch.randperm(len(labels), generator=generator)
    if kind == "class_aware":
        return class_aware_indices(labels, num_classes, samples_per_class, generator, size)
    weights = sample_weights(labels, num_classes, SAMPLING_POWER[kind])
    return torch.multinomial(weights, size, replacement=True, generator=generator)


def class_aware_indices(
    labels: Tensor, num_classes: int, k: int, generator: torch.Generator, size: int | None = None
) -> Tensor:
    """Class-aware sampling (Shen et al. 2016; Kang et al. 2020's ClassAwareSampler): ceil(size / k) groups, each a
    class drawn uniformly among those with images, then its next k images from a shuffled cycle over the class
    (reshuffled when used up); the first `size` (default len(labels)) indices. The cycles restart each epoch, so
    (seed, epoch) fixes the draw."""
    size = len(labels) if size is None else size
    present = torch.nonzero(torch.bincount(labels, minlength=num_classes)).flatten()
    groups = -(-size // k)
    drawn = present[torch.randint(len(present), (groups,), generator=generator)]
    counts = torch.bincount(labels, minlength=num_classes)
    by_class, starts = torch.argsort(labels, stable=True), (torch.cumsum(counts, 0) - counts).tolist()
    counts_list = counts.tolist()
    out = torch.empty(groups, k, dtype=torch.long)
    rows_of = torch.split(torch.argsort(drawn, stable=True), torch.bincount(drawn, minlength=num_classes).tolist())
    for cls, rows in enumerate(rows_of):  # classes in order: the generator's draws come in a fixed order
        if not len(rows):
            continue
        members = by_class[starts[cls] : starts[cls] + counts_list[cls]]
        need, members_n = len(rows) * k, len(members)
        cycles = [members[torch.randperm(members_n, generator=generator)] for _ in range(-(-need // members_n))]
        out[rows] = torch.cat(cycles)[:need].view(len(rows), k)
    return out.flatten()[:size]


def rank_share(order: Tensor, rank: int, world_size: int) -> Tensor:
    """This rank's strided share of the global order; the tail that does not divide evenly is dropped so every
    rank takes the same number of steps (the shares of all ranks partition order[: world_size * (n // world_size)])."""
    usable = len(order) // world_size * world_size
    return order[rank:usable:world_size]
