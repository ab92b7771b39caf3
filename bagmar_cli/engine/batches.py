"""Training batches epoch by epoch: which images (the sampler's order) and how they are augmented (batch or sample).

Both paths take their order from `epoch_order`, a function of (seed, epoch, rank), so a resumed run replays its
epochs and the two augmentation paths see the same images in the same batches:

- `DeviceBatches` (`data.augment_on = "batch"`): the split's uint8 tensor moves to the device once; each step
  indexes a batch and `BatchAugment` augments it there, its draws from a CPU generator seeded from (seed, epoch).
- `SampleBatches` (`"sample"`): one DataLoader kept for the whole run (persistent workers), transforming image by
  image; in worker processes each image's transform is seeded from (seed, epoch, index), so the draws do not
  depend on the worker count or on which worker took the batch.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    Sampler,
    get_worker_info,
)

from bagmar_cli.data import epoch_indices, epoch_length, rank_share
from bagmar_cli.data.augment.batch import BatchAugment
from bagmar_cli.data.images import collate_skipping
from bagmar_cli.data.splits import SkipUndecodable
from bagmar_cli.engine.distributed import World
from bagmar_cli.errors import SettingError
from bagmar_cli.settings import Settings

Batches = Iterator[tuple[Tensor, Tensor]]
MAX_AUTO_WORKERS = 8


def resolve_workers(setting: int | str, per_sample: bool) -> int:
    """`data.num_workers`: a number as given; "auto": min(8, CPUs - 1) where images are transformed one by one,
    0 on the batch path (whose work is on the training device)."""
    if setting != "auto":
        return int(setting)
    if not per_sample:
        return 0
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return min(MAX_AUTO_WORKERS, max(cpus - 1, 0))


def _mix(*parts: int) -> int:
    """A 63-bit seed from integers (the same on every platform and run)."""
    value = 0
    for part in parts:
        value = (value * 1_000_003 + part) % (1 << 63)
    return value


def process_batch(batch_size: int, processes: int) -> int:
    """Each process's share of the global `train.batch_size` (a remainder is left out); SettingError when there are
    more processes than images in a batch."""
    if batch_size < processes:
        raise SettingError(f"train.batch_size {batch_size} is smaller than the {processes} processes")
    return batch_size // processes


class EpochOrder(Sampler[list[int]]):
    """The index batches of one epoch: the sampler's global order drawn from (seed, epoch), this rank's strided
    share of it under torchrun (so every sampler works there), cut into batches."""

    def __init__(self, settings: Settings, labels: Tensor, num_classes: int, world: World) -> None:
        self.settings, self.labels, self.num_classes, self.world = settings, labels, num_classes, world
        self.batch = process_batch(settings.train.batch_size, world.size)
        self.size = epoch_length(settings.data.epoch_size, labels, num_classes)  # the global draws of an epoch
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def indices(self) -> Tensor:
        """This rank's indices for the epoch, in order (the whole draw for a single process)."""
        data = self.settings.data
        generator = torch.Generator().manual_seed(self.settings.train.seed * 100_003 + self.epoch)
        order = epoch_indices(
            data.sampler, self.labels, self.num_classes, generator, data.samples_per_class, size=self.size
        )
        return order if self.world.size == 1 else rank_share(order, self.world.rank, self.world.size)

    def _batches(self) -> BatchSampler:
        # several processes drop a last short batch so that every rank takes the same number of steps
        return BatchSampler(self.indices().tolist(), self.batch, drop_last=self.world.size > 1)

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._batches())

    def __len__(self) -> int:
        n = self.size // self.world.size
        return n // self.batch if self.world.size > 1 else -(-n // self.batch)


class DeviceBatches:
    """Batches indexed from the split held on the device, augmented there by `BatchAugment`."""

    def __init__(
        self, images: Tensor, labels: Tensor, order: EpochOrder, augment: BatchAugment, device: torch.device
    ) -> None:
        self.images, self.labels = images.to(device), labels.to(device)
        self.order, self.augment, self.device = order, augment, device
        self.failed = 0  # as SampleBatches counts them: a tensor split has nothing to decode

    def __len__(self) -> int:
        return len(self.order)

    def epoch(self, epoch: int) -> Batches:
        self.order.set_epoch(epoch)
        generator = torch.Generator().manual_seed(_mix(self.order.settings.train.seed, epoch, self.order.world.rank))
        for batch in self.order:
            index = torch.tensor(batch).to(self.device, non_blocking=True)
            yield self.augment(self.images[index], generator), self.labels[index]


class _Keyed(Dataset[Any]):
    """`dataset[index]` looked up by (epoch, index); in a worker process the transform's RNG is seeded per key."""

    def __init__(self, dataset: Dataset[Any], seed: int) -> None:
        self.dataset, self.seed = dataset, seed

    def __getitem__(self, key: tuple[int, int]) -> Any:
        epoch, index = key
        if get_worker_info() is not None:
            torch.manual_seed(_mix(self.seed, epoch, index))
        return self.dataset[index]


class _KeyedOrder(Sampler[list[tuple[int, int]]]):
    def __init__(self, order: EpochOrder) -> None:
        self.order = order

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch = self.order.epoch
        return ([(epoch, i) for i in batch] for batch in self.order)

    def __len__(self) -> int:
        return len(self.order)


class SampleBatches:
    """Batches of a per-sample `Dataset` through one DataLoader kept for the run (persistent workers).

    With `max_bad_fraction` (image files) items that fail to decode are dropped from their batch, warned about and
    counted in `failed` (per epoch); more than that fraction of the split in one epoch stops the run.
    """

    def __init__(
        self,
        dataset: Dataset[Any],
        order: EpochOrder,
        workers: int,
        device: torch.device,
        *,
        max_bad_fraction: float | None = None,
    ) -> None:
        self.order, self.device, self.max_bad_fraction = order, device, max_bad_fraction
        self.size, self.failed = order.size, 0  # the epoch's draws: the share of undecodable images is of these
        self.loader = DataLoader(
            _Keyed(dataset, _mix(order.settings.train.seed, order.world.rank)),
            batch_sampler=_KeyedOrder(order),
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=device.type == "cuda",
            generator=torch.Generator().manual_seed(order.settings.train.seed),
            collate_fn=None if max_bad_fraction is None else collate_skipping,
        )

    def __len__(self) -> int:
        return len(self.order)

    def epoch(self, epoch: int) -> Batches:
        self.order.set_epoch(epoch)
        skipping = None
        if self.max_bad_fraction is not None:
            skipping = SkipUndecodable(self.loader, self.size, self.max_bad_fraction, self.order.world.size > 1)
        batches: Iterable[tuple[Tensor, Tensor]] = skipping if skipping is not None else self.loader
        for images, labels in batches:
            yield images.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True)
        self.failed = skipping.failed if skipping is not None else 0
