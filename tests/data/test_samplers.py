"""Samplers: the class-drawing probabilities of class-balanced and square-root sampling, the structure of
class-aware sampling, and every sampler's shards across ranks."""

import pytest
import torch

from bagmar_cli.data import epoch_indices, epoch_length, rank_share
from bagmar_cli.data.samplers import SAMPLERS, sample_weights
from bagmar_cli.engine.batches import EpochOrder
from bagmar_cli.engine.distributed import World
from bagmar_cli.errors import SettingError
from bagmar_cli.settings import load_settings

COUNTS = [400, 100, 25, 4]
LABELS = torch.repeat_interleave(torch.arange(4), torch.tensor(COUNTS))
CHI2_ALPHA = 0.001  # a uniform draw fails the test once in a thousand seeds; the seeds here are fixed


def _draw(kind, seed, labels=LABELS, k=4):
    return epoch_indices(kind, labels, 4, torch.Generator().manual_seed(seed), k)


def _class_probabilities(q):
    weights = sample_weights(LABELS, 4, q)
    return torch.zeros(4, dtype=torch.float64).index_add_(0, LABELS, weights) / weights.sum()


def _chi2_p_value(observed: torch.Tensor) -> float:
    """p-value of Pearson's chi-square test of `observed` counts against the uniform distribution."""
    expected = observed.sum() / len(observed)
    stat = ((observed - expected) ** 2 / expected).sum()
    return float(torch.special.gammaincc(torch.tensor((len(observed) - 1) / 2), stat / 2))


def test_instance_sampling_is_a_permutation():
    assert sorted(_draw("instance", 0).tolist()) == list(range(len(LABELS)))


def test_class_balanced_draws_every_class_equally():
    assert torch.allclose(_class_probabilities(0.0), torch.full((4,), 0.25, dtype=torch.float64))


def test_sqrt_draws_classes_in_proportion_to_the_root_of_their_size():
    roots = torch.tensor(COUNTS, dtype=torch.float64).sqrt()
    assert torch.allclose(_class_probabilities(0.5), roots / roots.sum())


@pytest.mark.parametrize(("kind", "q"), [("class", 0.0), ("sqrt", 0.5)])
def test_weighted_samplers_draw_an_epoch_reproducibly(kind, q):
    first = _draw(kind, 0).tolist()
    assert len(first) == len(LABELS) and first == _draw(kind, 0).tolist() and first != _draw(kind, 1).tolist()
    many = torch.cat([LABELS[_draw(kind, seed)] for seed in range(40)])
    frequencies = torch.bincount(many, minlength=4).double() / len(many)
    assert torch.allclose(frequencies, _class_probabilities(q), atol=0.02)


@pytest.mark.parametrize("k", [1, 4, 7])
def test_class_aware_draws_runs_of_k_images_of_one_class(k):
    draw = _draw("class_aware", 0, k=k)
    assert len(draw) == len(LABELS)
    groups = LABELS[draw][: len(draw) // k * k].view(-1, k)
    assert (groups == groups[:, :1]).all()  # every run of k is one class


def test_class_aware_draws_classes_uniformly():
    classes = torch.cat([LABELS[_draw("class_aware", seed)][::4] for seed in range(20)])
    observed = torch.bincount(classes, minlength=4).double()
    assert _chi2_p_value(observed) > CHI2_ALPHA, observed
    # the test has power: the labels' own (long-tailed) frequencies fail it
    assert _chi2_p_value(torch.bincount(LABELS[torch.randint(len(LABELS), (len(classes),))]).double()) < CHI2_ALPHA


def test_class_aware_cycles_through_a_small_class_before_repeating():
    draw = _draw("class_aware", 3)
    rare = draw[LABELS[draw] == 3].tolist()  # 4 images: each cycle of 4 draws shows all of them once
    for start in range(0, len(rare) - 3, 4):
        assert sorted(rare[start : start + 4]) == [525, 526, 527, 528]


def test_class_aware_is_deterministic_per_seed_and_epoch():
    assert torch.equal(_draw("class_aware", 5), _draw("class_aware", 5))
    assert not torch.equal(_draw("class_aware", 5), _draw("class_aware", 6))


def test_class_aware_skips_classes_without_images():
    labels = torch.tensor([0, 0, 2, 2, 2])
    assert set(labels[_draw("class_aware", 0, labels, k=2)].tolist()) <= {0, 2}


@pytest.mark.parametrize("kind", SAMPLERS)
def test_two_ranks_partition_the_single_process_draw(kind):
    settings = load_settings(overrides=[f"data.sampler='{kind}'", "train.batch_size=8", "train.seed=3"])
    orders = [EpochOrder(settings, LABELS, 4, World(rank, size)) for rank, size in ((0, 1), (0, 2), (1, 2))]
    for order in orders:
        order.set_epoch(2)
    whole, first, second = (order.indices() for order in orders)
    usable = len(whole) // 2 * 2
    assert torch.equal(torch.stack([first, second], 1).flatten(), whole[:usable])
    assert [len(list(order)) for order in orders] == [len(order) for order in orders]
    assert all(len(batch) == 4 for batch in orders[1]) and all(len(batch) == 4 for batch in orders[2])


def test_rank_share_drops_the_uneven_tail():
    assert rank_share(torch.arange(7), 1, 3).tolist() == [1, 4]


def test_unknown_sampler_is_a_usage_error():
    with pytest.raises(SettingError, match=r"unknown sampler 'sqr' \(did you mean sqrt\?\); choose from instance"):
        epoch_indices("sqr", LABELS, 4, torch.Generator())


# -- epoch size -----------------------------------------------------------------------------------------------


def test_a_max_class_epoch_is_the_largest_class_times_the_classes_with_images():
    labels = torch.tensor([0] * 5 + [2] * 3)  # class 1 has no image: 2 classes x 5 draws
    assert epoch_length("max_class", labels, 3) == 10 and epoch_length("dataset", labels, 3) == 8
    assert epoch_length("max_class", LABELS, 4) == 4 * 400


@pytest.mark.parametrize("kind", ["class", "sqrt", "class_aware"])
def test_samplers_that_draw_with_replacement_draw_a_max_class_epoch(kind):
    settings = load_settings(overrides=[f"data.sampler='{kind}'", "data.epoch_size='max_class'", "train.batch_size=64"])
    order = EpochOrder(settings, LABELS, 4, World(0, 1))
    drawn = order.indices()
    assert len(drawn) == 1600 and len(order) == 25 and sum(len(batch) for batch in order) == 1600
    if kind == "class_aware":  # runs of 4 images of one class, classes uniform
        runs = LABELS[drawn].view(-1, 4)
        assert (runs == runs[:, :1]).all()
        assert _chi2_p_value(torch.bincount(runs[:, 0], minlength=4).double()) > CHI2_ALPHA


def test_a_max_class_epoch_under_two_ranks_is_the_strided_share_of_the_whole():
    sets = ["data.sampler='class_aware'", "data.epoch_size='max_class'", "train.batch_size=8"]
    orders = [
        EpochOrder(load_settings(overrides=sets), LABELS, 4, World(rank, size))
        for rank, size in ((0, 1), (0, 2), (1, 2))
    ]
    whole, first, second = (order.indices() for order in orders)
    assert torch.equal(torch.stack([first, second], 1).flatten(), whole)
    assert [len(order) for order in orders] == [200, 200, 200]  # steps: 1600 draws in batches of 8, or 4 a rank


def test_a_permutation_cannot_have_a_max_class_epoch():
    with pytest.raises(SettingError, match='epoch_size = "max_class" draws with replacement: it needs sampler'):
        load_settings(overrides=["data.epoch_size='max_class'"])
    with pytest.raises(ValueError, match="a permutation has 529 indices, not 5"):
        epoch_indices("instance", LABELS, 4, torch.Generator(), size=5)
