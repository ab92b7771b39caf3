"""Samplers: the class-drawing probabilities of class-balanced and square-root sampling."""

import pytest
import torch

from bagmar_cli.data import make_sampler
from bagmar_cli.data.samplers import sample_weights
from bagmar_cli.errors import UsageError

COUNTS = [400, 100, 25, 4]
LABELS = torch.repeat_interleave(torch.arange(4), torch.tensor(COUNTS))


def _class_probabilities(q):
    weights = sample_weights(LABELS, 4, q)
    return torch.zeros(4, dtype=torch.float64).index_add_(0, LABELS, weights) / weights.sum()


def test_instance_sampling_is_left_to_the_loader():
    assert make_sampler("instance", LABELS, 4) is None


def test_class_balanced_draws_every_class_equally():
    assert torch.allclose(_class_probabilities(0.0), torch.full((4,), 0.25, dtype=torch.float64))


def test_sqrt_draws_classes_in_proportion_to_the_root_of_their_size():
    roots = torch.tensor(COUNTS, dtype=torch.float64).sqrt()
    assert torch.allclose(_class_probabilities(0.5), roots / roots.sum())


@pytest.mark.parametrize(("kind", "q"), [("class", 0.0), ("sqrt", 0.5)])
def test_samplers_draw_an_epoch_reproducibly(kind, q):
    draw = lambda seed: list(make_sampler(kind, LABELS, 4, torch.Generator().manual_seed(seed)))  # noqa: E731
    first = draw(0)
    assert len(first) == len(LABELS) and first == draw(0) and first != draw(1)
    many = torch.cat([LABELS[draw(seed)] for seed in range(40)])
    frequencies = torch.bincount(many, minlength=4).double() / len(many)
    assert torch.allclose(frequencies, _class_probabilities(q), atol=0.02)


def test_unknown_sampler_is_a_usage_error():
    with pytest.raises(UsageError, match=r"unknown sampler 'sqr' \(did you mean sqrt\?\); choose from instance"):
        make_sampler("sqr", LABELS, 4)
