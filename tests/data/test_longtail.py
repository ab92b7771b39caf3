"""Long-tail profiles: the per-class counts of the standard benchmarks, exactly."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from bagmar_cli.data import lt_counts
from bagmar_cli.data.longtail import shuffled_by_class
from bagmar_cli.errors import SettingError

REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference" / "class_counts"

# (n_max, classes, imb) -> training images of the exponential profile, as the CIFAR-LT papers report them.
STANDARD_TOTALS = {
    (500, 100, 100): 10_847,  # CIFAR-100-LT
    (500, 100, 50): 12_608,
    (500, 100, 10): 19_573,
    (500, 100, 200): 9_502,
    (5000, 10, 100): 12_406,  # CIFAR-10-LT
    (5000, 10, 10): 20_431,
    (6000, 10, 100): 14_886,  # Fashion-MNIST-LT
    (6000, 10, 10): 24_516,
}


@pytest.mark.parametrize(("n_max", "classes", "imb"), list(STANDARD_TOTALS))
def test_exp_profile_totals_match_the_benchmarks(n_max, classes, imb):
    counts = lt_counts(n_max, classes, imb, "exp")
    assert sum(counts) == STANDARD_TOTALS[n_max, classes, imb]
    assert counts[0] == n_max and counts[-1] == n_max // imb
    assert counts == sorted(counts, reverse=True)


def test_cifar10_lt_imb100_counts():
    assert lt_counts(5000, 10, 100, "exp") == [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]


def test_step_profile_keeps_the_head_and_divides_the_tail():
    assert lt_counts(5000, 10, 100, "step") == [5000] * 5 + [50] * 5
    assert sum(lt_counts(500, 100, 10, "step")) == 50 * 500 + 50 * 50


def test_imbalance_one_is_balanced():
    assert lt_counts(500, 100, 1, "exp") == [500] * 100


@pytest.mark.parametrize("name", ["CIFAR-100-LT_imb100_train.json", "CIFAR-10-LT_imb100_train.json"])
def test_counts_equal_the_published_reference(name):
    path = REFERENCE / name
    if not path.is_file():
        pytest.skip(f"{path} is absent (no ../shared beside this checkout)")
    reference = json.loads(path.read_text())
    n_max = reference[0]
    assert lt_counts(n_max, len(reference), 100, "exp") == reference


@pytest.mark.parametrize("imb", [0.5, 0, -3, math.inf, math.nan, True, "100"])
def test_bad_imbalance_factors_are_usage_errors(imb):
    with pytest.raises(SettingError, match="imbalance factor"):
        lt_counts(500, 100, imb, "exp")


def test_unknown_profile_suggests_the_closest():
    with pytest.raises(SettingError, match=r"unknown long-tail profile 'stpe' \(did you mean step\?\)"):
        lt_counts(500, 100, 100, "stpe")


def test_shuffled_by_class_is_a_function_of_the_seed():
    labels = np.arange(1000) % 10
    first, again, other = (shuffled_by_class(labels, 10, seed) for seed in (0, 0, 1))
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))
    assert all(set(labels[idx]) == {c} and len(idx) == 100 for c, idx in enumerate(first))
