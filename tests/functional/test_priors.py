"""Training prior and SADE's shifted test priors, checked by hand."""

import math

import numpy as np
import pytest
import torch

from bagmar_cli.functional.priors import class_prior, long_tailed_prior, shifted_prior_accuracies

EXPECTED_ORDER = [
    "forward-50",
    "forward-25",
    "forward-10",
    "forward-5",
    "forward-2",
    "uniform",
    "backward-2",
    "backward-5",
    "backward-10",
    "backward-25",
    "backward-50",
]


def test_long_tailed_prior_by_hand():
    q = long_tailed_prior(3, 4.0)  # n_j proportional to 4^(-j/2): 1, 1/2, 1/4
    assert q.tolist() == pytest.approx([1 / 1.75, 0.5 / 1.75, 0.25 / 1.75])
    backward = long_tailed_prior(3, 4.0, backward=True)
    assert backward.tolist() == pytest.approx([0.25 / 1.75, 0.5 / 1.75, 1 / 1.75])


def test_imbalance_ratio_is_head_over_tail():
    q = long_tailed_prior(100, 50)
    assert float(q[0] / q[-1]) == pytest.approx(50)
    assert bool((q[1:] < q[:-1]).all())


def test_keys_in_table_order():
    assert list(shifted_prior_accuracies(torch.rand(10))) == EXPECTED_ORDER


def test_uniform_equals_macro_accuracy():
    acc = torch.rand(37, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    acc[[3, 20]] = math.nan  # classes without test images
    result = shifted_prior_accuracies(acc)
    assert result["uniform"] == pytest.approx(float(np.nanmean(acc.numpy())))


def test_forward_two_by_hand():
    acc = torch.tensor([1.0, 0.5, 0.0])
    q = np.array([1, 2**-0.5, 0.5])  # 2^(-j/2)
    result = shifted_prior_accuracies(acc)
    assert result["forward-2"] == pytest.approx(float((q * [1.0, 0.5, 0.0]).sum() / q.sum()))
    assert result["backward-2"] == pytest.approx(float((q[::-1] * [1.0, 0.5, 0.0]).sum() / q.sum()))
    assert result["forward-50"] > result["forward-2"] > result["uniform"] > result["backward-50"]


def test_train_counts_set_the_tail_order():
    acc = torch.tensor([0.0, 1.0, 0.5])
    counts = torch.tensor([5, 500, 50])  # class 1 is the head, class 0 the tail
    ordered = shifted_prior_accuracies(torch.tensor([1.0, 0.5, 0.0]))
    assert shifted_prior_accuracies(acc, counts) == pytest.approx(ordered)


def test_class_prior_by_hand_and_with_an_empty_class():
    assert class_prior(torch.tensor([6, 3, 1])).tolist() == pytest.approx([0.6, 0.3, 0.1])
    prior = class_prior(torch.tensor([3, 0, 1]))  # the empty class counts as one image
    assert prior.tolist() == pytest.approx([0.6, 0.2, 0.2])
