"""Calibration metrics against hand computations (Guo et al. 2017, 15 equal-width bins)."""

import math

import pytest
import torch

from bagmar_cli.functional.calibration import ece_from_bins, nll, reliability_bins


def expected_calibration_error(probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """ECE (Guo et al. 2017) over 15 equal-width bins, as eval reports it."""
    return ece_from_bins(reliability_bins(probs, labels))


# Confidences 0.9 (right), 0.9 (wrong), 0.7 (right), 0.55 (right) with 15 bins of width 1/15:
# bin 13 (0.867, 0.933]: 2 samples, acc 0.5, conf 0.9 -> 2/4 * 0.4  = 0.2
# bin 10 (0.667, 0.733]: 1 sample,  acc 1,   conf 0.7 -> 1/4 * 0.3  = 0.075
# bin  8 (0.533, 0.600]: 1 sample,  acc 1,   conf 0.55 -> 1/4 * 0.45 = 0.1125
PROBS = torch.tensor([[0.9, 0.1], [0.1, 0.9], [0.7, 0.3], [0.45, 0.55]], dtype=torch.float64)
LABELS = torch.tensor([0, 0, 0, 1])


def test_ece_by_hand():
    assert float(expected_calibration_error(PROBS, LABELS)) == pytest.approx(0.2 + 0.075 + 0.1125)


def test_bins_by_hand():
    bins = reliability_bins(PROBS, LABELS)
    assert bins.counts.tolist() == [0] * 8 + [1, 0, 1, 0, 0, 2, 0]
    assert bins.accuracy[13] == 0.5 and bins.confidence[13] == pytest.approx(0.9)
    assert bins.confidence[8] == pytest.approx(0.55)
    assert math.isnan(bins.accuracy[0]) and math.isnan(bins.confidence[14])
    assert bins.lower[0] == 0.0 and bins.upper[-1] == 1.0


def test_confident_and_right_is_calibrated():
    probs = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    bins = reliability_bins(probs, torch.tensor([0, 1]))
    assert bins.counts[-1] == 2  # confidence exactly 1 lands in the last bin (14/15, 1]
    assert float(expected_calibration_error(probs, torch.tensor([0, 1]))) == 0.0


def test_nll_by_hand():
    probs = torch.tensor([[0.5, 0.5], [0.25, 0.75]])
    assert float(nll(probs, torch.tensor([0, 1]))) == pytest.approx(-(math.log(0.5) + math.log(0.75)) / 2)


def test_nll_of_a_zero_probability_is_finite():
    assert float(nll(torch.tensor([[1.0, 0.0]]), torch.tensor([1]))) == pytest.approx(-math.log(1e-12))
