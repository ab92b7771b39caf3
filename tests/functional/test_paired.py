"""Paired comparison statistics against hand counts, exact distributions and simulated nulls and shifts."""

import math

import pytest
import torch

from bagmar_cli.functional import paired
from bagmar_cli.functional.metrics import accuracy_summary
from bagmar_cli.functional.paired import (
    METRICS,
    bootstrap_differences,
    compare_correct,
    mcnemar,
    mcnemar_p,
    metric_class_weights,
    seed_metrics,
)

COUNTS = torch.tensor([500, 300, 100, 60, 30, 20, 12, 5])  # many: 0-1, medium: 2-5, few: 6-7


def _draw(n, classes, accuracy, generator):
    """Labels cycling over the classes and Bernoulli(accuracy) correctness."""
    labels = torch.arange(n) % classes
    return labels, torch.rand(n, generator=generator) < accuracy


def test_seed_metrics_equal_the_eval_summary():
    generator = torch.Generator().manual_seed(1)
    labels = torch.randint(0, 8, (300,), generator=generator)
    preds = torch.where(torch.rand(300, generator=generator) < 0.6, labels, torch.randint(0, 8, (300,)))
    weights, defined = metric_class_weights(labels, COUNTS)
    values = seed_metrics((preds == labels)[None], labels, weights)[0]
    summary = accuracy_summary(preds, labels, COUNTS)
    assert defined.all()
    for m, name in enumerate(METRICS):
        assert values[m].item() == pytest.approx(summary[name], abs=1e-12)


def test_mcnemar_by_hand():
    # 5 images only A gets right, 1 only B: p = 2 * (C(6,0) + C(6,1)) / 2^6
    assert mcnemar_p(5, 1) == pytest.approx(2 * 7 / 64)
    assert mcnemar_p(1, 5) == pytest.approx(2 * 7 / 64)
    assert mcnemar_p(3, 3) == 1.0
    assert mcnemar_p(0, 0) == 1.0
    assert mcnemar_p(10, 0) == pytest.approx(2 / 1024)
    a = torch.tensor([1, 1, 1, 1, 1, 1, 0, 0], dtype=torch.bool)
    b = torch.tensor([0, 0, 0, 0, 0, 1, 1, 0], dtype=torch.bool)
    assert mcnemar(a, b) == pytest.approx(2 * 7 / 64)


def test_mcnemar_stays_exact_for_thousands_of_discordant_images():
    total = sum(math.comb(2000, k) for k in range(951)) / 2**2000
    assert mcnemar_p(1050, 950) == pytest.approx(min(1.0, 2 * total), rel=1e-9)


@pytest.mark.parametrize("pairs", [True, False])
def test_bootstrap_follows_the_hand_computed_distribution(monkeypatch, pairs):
    """One class of 2 images, A right on the first, B on the second: 2 draws give diff 1, 0, -1 w.p. 1/4, 1/2, 1/4."""
    if not pairs:
        monkeypatch.setattr(paired, "PAIR_TABLE_MAX", 0)
    labels = torch.tensor([0, 0])
    counts = torch.tensor([50, 50])
    weights, _ = metric_class_weights(labels, counts)
    a, b = torch.tensor([[True, False]]), torch.tensor([[False, True]])
    draws = bootstrap_differences(a, b, labels, weights, 20_000, torch.Generator().manual_seed(0))[:, 0]
    assert set(draws.tolist()) == {-1.0, 0.0, 1.0}
    assert (draws == 1).double().mean().item() == pytest.approx(0.25, abs=0.015)
    assert (draws == 0).double().mean().item() == pytest.approx(0.5, abs=0.015)


@pytest.mark.parametrize("pairs", [True, False])
def test_bootstrap_variance_is_the_stratified_formula(monkeypatch, pairs):
    """Var(top-1 diff) = sum_c (n_c/n)^2 var_c(d) / n_c, with var_c the class's population variance of d = a - b."""
    if not pairs:
        monkeypatch.setattr(paired, "PAIR_TABLE_MAX", 0)
    generator = torch.Generator().manual_seed(3)
    labels = torch.tensor([0] * 7 + [1] * 4 + [2] * 9)
    a = torch.rand(20, generator=generator) < 0.6
    b = torch.rand(20, generator=generator) < 0.5
    weights, _ = metric_class_weights(labels, torch.tensor([200, 50, 5]))
    draws = bootstrap_differences(a[None], b[None], labels, weights, 40_000, generator)
    d = a.double() - b.double()
    expected = sum(
        (d[labels == c].var(unbiased=False) / (labels == c).sum() * ((labels == c).sum() / 20) ** 2).item()
        for c in range(3)
    )
    assert draws[:, 0].mean().item() == pytest.approx(d.mean().item(), abs=0.01)
    assert draws[:, 0].var().item() == pytest.approx(expected, rel=0.05)
    few = 4  # the few-shot group is class 2 alone: its draws are that class's resampled accuracy difference
    assert draws[:, few].var().item() == pytest.approx(d[labels == 2].var(unbiased=False).item() / 9, rel=0.05)


def test_many_seeds_over_several_packs_keep_images_paired():
    """Identical seeds get identical resampled counts; a seed and its complement sum to the class size."""
    generator = torch.Generator().manual_seed(4)
    labels = torch.arange(4000) % 2  # 2000 per class: base 2001, a few seeds per int64
    first = torch.rand(4000, generator=generator) < 0.5
    correct = torch.stack([first, first, ~first] + [torch.rand(4000, generator=generator) < 0.7 for _ in range(9)])
    sums = paired._ClassSums(correct, labels, 2)
    assert len(sums.tables) > 1
    counts = sums.draw(200, generator)
    assert torch.equal(counts[:, :, 0], counts[:, :, 1])
    assert torch.equal(counts[:, :, 0] + counts[:, :, 2], torch.full((200, 2), 2000.0))
    observed = torch.stack([correct[:, labels == c].sum(dim=1) for c in range(2)]).double()
    assert torch.allclose(counts.mean(dim=0), observed, rtol=0.01)


def test_a_model_against_itself_is_diff_zero_and_p_one():
    labels, correct = _draw(400, 8, 0.6, torch.Generator().manual_seed(5))
    results = compare_correct(correct, correct, labels, COUNTS, resamples=500)
    for name in METRICS:
        assert results[name].diff == 0.0
        assert results[name].ci == (0.0, 0.0)
        assert results[name].p_value == 1.0
        assert results[name].distinguishable() is False
    assert results["top1"].test == "exact McNemar"
    assert results["few"].test == "paired permutation"


def test_a_known_shift_is_detected():
    generator = torch.Generator().manual_seed(6)
    labels, a = _draw(2000, 8, 0.8, generator)
    _, b = _draw(2000, 8, 0.6, generator)
    results = compare_correct(a, b, labels, COUNTS, resamples=1000)
    for name in METRICS:
        assert results[name].diff > 0.1
        assert results[name].ci[0] > 0
        assert results[name].p_value < 0.01
        assert results[name].distinguishable()


def test_a_seeded_rerun_gives_identical_numbers():
    generator = torch.Generator().manual_seed(7)
    labels, a = _draw(300, 8, 0.6, generator)
    _, b = _draw(300, 8, 0.55, generator)
    first = compare_correct(a, b, labels, COUNTS, resamples=300, seed=11)
    assert compare_correct(a, b, labels, COUNTS, resamples=300, seed=11) == first
    assert compare_correct(a, b, labels, COUNTS, resamples=300, seed=12)["few"].ci != first["few"].ci


def test_a_group_without_test_classes_is_undefined():
    labels = torch.tensor([0, 1, 0, 1])  # only many-shot classes have test images
    correct = torch.tensor([True, False, True, True])
    results = compare_correct(correct, correct, labels, COUNTS, resamples=100)
    assert results["few"].a is None and results["few"].ci is None and results["few"].distinguishable() is None
    assert results["many"].a == pytest.approx(0.75)


def test_null_intervals_cover_zero_at_about_the_stated_rate():
    """Two models drawn independently with the same per-image difficulty: the 95 % interval covers 0 ~95 % of the
    time and McNemar rejects at 5 % ~5 % of the time, over repeated test sets."""
    generator = torch.Generator().manual_seed(8)
    covered = rejected = 0
    repeats = 300
    for repeat in range(repeats):
        labels = torch.arange(240) % 8
        difficulty = torch.rand(240, generator=generator)
        a = torch.rand(240, generator=generator) < difficulty
        b = torch.rand(240, generator=generator) < difficulty
        top1 = compare_correct(a, b, labels, COUNTS, resamples=300, seed=repeat)["top1"]
        covered += top1.ci[0] <= 0 <= top1.ci[1]
        rejected += top1.p_value < 0.05
    assert 0.91 <= covered / repeats <= 0.99
    assert rejected / repeats <= 0.07


def test_seed_groups_report_per_seed_values_and_a_bootstrap_p():
    generator = torch.Generator().manual_seed(9)
    labels = torch.arange(600) % 8
    a = torch.stack([torch.rand(600, generator=generator) < 0.75 for _ in range(3)])
    b = torch.stack([torch.rand(600, generator=generator) < 0.6 for _ in range(3)])
    results = compare_correct(a, b, labels, COUNTS, resamples=500)
    top1 = results["top1"]
    assert top1.test == "hierarchical bootstrap"
    assert top1.a_seeds == pytest.approx(a.double().mean(dim=1).tolist())
    assert top1.a == pytest.approx(sum(top1.a_seeds) / 3)
    assert top1.ci[0] > 0 and top1.p_value < 0.01


def test_an_empty_split_has_no_values():
    empty = torch.zeros(0, dtype=torch.bool)
    results = compare_correct(empty, empty, torch.zeros(0, dtype=torch.int64), COUNTS, resamples=50)
    assert all(result.a is None and result.ci is None for result in results.values())
