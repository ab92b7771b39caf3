"""engine/batches.py: an epoch's index batches (EpochOrder) and the worker count "auto" resolves to."""

from __future__ import annotations

import pytest
import torch

from bagmar_cli.engine.batches import EpochOrder, resolve_workers
from bagmar_cli.engine.distributed import World
from bagmar_cli.errors import SettingError
from bagmar_cli.settings import Settings

LABELS = torch.tensor([0] * 12 + [1] * 5 + [2] * 3)  # 20 images, 3 classes


def _order(seed: int = 0, batch: int = 6, world: World | None = None) -> EpochOrder:
    settings = Settings()
    settings = settings.model_copy(
        update={"train": settings.train.model_copy(update={"seed": seed, "batch_size": batch})}
    )
    return EpochOrder(settings, LABELS, 3, world or World())


def _batches(order: EpochOrder, epoch: int) -> list[list[int]]:
    order.set_epoch(epoch)
    return list(order)


def test_batches_cover_the_split_once_with_a_short_last_batch() -> None:
    order = _order()
    batches = _batches(order, 0)
    assert [len(b) for b in batches] == [6, 6, 6, 2] and len(order) == 4
    assert sorted(i for b in batches for i in b) == list(range(20))


def test_the_order_is_a_function_of_seed_and_epoch() -> None:
    first = _batches(_order(seed=3), 1)
    assert _batches(_order(seed=3), 1) == first  # a resumed run replays the epoch
    assert _batches(_order(seed=3), 2) != first
    assert _batches(_order(seed=4), 1) != first


def test_ranks_split_the_epoch_without_overlap_and_drop_short_batches() -> None:
    ranks = [_order(batch=6, world=World(rank, 2)) for rank in range(2)]
    shares = [set(order.indices().tolist()) for order in ranks]
    for order in ranks:
        order.set_epoch(0)
    assert not shares[0] & shares[1] and len(shares[0] | shares[1]) == 20
    assert all(len(b) == 3 for order in ranks for b in order)  # 6 per step split over 2 ranks
    assert len(ranks[0]) == len(ranks[1]) == 3


def test_a_batch_smaller_than_the_process_count_is_refused() -> None:
    with pytest.raises(SettingError, match="smaller than the 4 processes"):
        _order(batch=2, world=World(0, 4))


def test_resolve_workers() -> None:
    assert resolve_workers(3, per_sample=True) == 3
    assert resolve_workers("auto", per_sample=False) == 0
    assert 0 <= resolve_workers("auto", per_sample=True) <= 8
