"""Loss math against numbers worked out by hand (or with plain numpy loops) and against autograd."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from bagmar_cli.functional import losses as LF

F64 = torch.float64


def gradient_stats(
    log_probs: torch.Tensor, labels: torch.Tensor, global_batch: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(pos, neg) as BaGMarLoss accumulates them: both are the one gradient mass, in float64."""
    mass = LF.bagmar_gradient_mass(log_probs, labels, global_batch).to(torch.float64)
    return mass, mass.clone()


def brute_force_stats(logits: torch.Tensor, labels: torch.Tensor, global_batch: int | None = None):
    """pos and neg from autograd's gradient of the mean cross-entropy, by their definitions, in loops."""
    logits = logits.detach().to(F64).requires_grad_()
    (g,) = torch.autograd.grad(F.cross_entropy(logits, labels), logits)
    g = g * len(labels) / (global_batch or len(labels))
    pos, neg = np.zeros(logits.shape[1]), np.zeros(logits.shape[1])
    for i, k in enumerate(labels.tolist()):
        pos[k] += abs(g[i, k].item())
        neg[k] += sum(abs(g[i, j].item()) for j in range(logits.shape[1]) if j != k)
    return pos, neg


# -- class weights, priors, margins ------------------------------------------------------------


def test_class_balanced_weights_by_hand():
    raw = [0.1 / (1 - 0.9**n) for n in (100, 10, 1)]  # (1 - beta) / (1 - beta^n)
    expected = [3 * w / sum(raw) for w in raw]
    weights = LF.class_balanced_weights(torch.tensor([100, 10, 1]), 0.9)
    assert weights.tolist() == pytest.approx(expected, rel=1e-12)
    assert weights.sum().item() == pytest.approx(3.0)


def test_class_balanced_weights_limits_of_beta():
    """Cui et al.: beta = 0 is no re-weighting, beta -> 1 tends to inverse class frequency."""
    counts = torch.tensor([100, 1])
    assert LF.class_balanced_weights(counts, 0.0).tolist() == [1.0, 1.0]
    w = LF.class_balanced_weights(counts, 1 - 1e-7)
    assert (w[1] / w[0]).item() == pytest.approx(100.0, rel=1e-3)


def test_empty_classes_give_finite_priors_weights_and_margins():
    counts = torch.tensor([5, 0, 1])
    for values in (LF.class_balanced_weights(counts, 0.9999), LF.log_prior(counts), LF.ldam_margins(counts, 0.5)):
        assert torch.isfinite(values).all()
    assert LF.log_prior(counts)[1] == LF.log_prior(counts)[2]  # an empty class counts as one sample


def test_log_prior_by_hand():
    expected = [math.log(0.6), math.log(0.2), math.log(0.2)]
    assert LF.log_prior(torch.tensor([3, 1, 1])).tolist() == pytest.approx(expected)


def test_ldam_margins_by_hand():
    # n^(-1/4) = 0.1, 0.5, 1 for n = 10000, 16, 1; the largest is scaled to 0.5
    margins = LF.ldam_margins(torch.tensor([10000, 16, 1]), 0.5)
    assert margins.tolist() == pytest.approx([0.05, 0.25, 0.5])


def test_ldam_logits_subtract_the_target_margin_then_scale():
    logits = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    margins = torch.tensor([0.05, 0.25, 0.5])
    out = LF.ldam_logits(logits, torch.tensor([2, 0]), margins, 30.0)
    assert np.allclose(out.numpy(), [[30.0, 60.0, 75.0], [-1.5, 0.0, 0.0]])


# -- focal -------------------------------------------------------------------------------------


def test_focal_loss_by_hand():
    logits = torch.tensor([[0.0, math.log(3.0)], [0.0, math.log(3.0)]])  # p = (1/4, 3/4)
    labels = torch.tensor([1, 0])
    per_sample = [(1 / 4) ** 2 * -math.log(3 / 4), (3 / 4) ** 2 * -math.log(1 / 4)]
    assert LF.focal_loss(logits, labels, 2.0).item() == pytest.approx(sum(per_sample) / 2)
    weighted = (1.0 * per_sample[0] + 2.0 * per_sample[1]) / 3.0
    assert LF.focal_loss(logits, labels, 2.0, torch.tensor([2.0, 1.0])).item() == pytest.approx(weighted)


def test_focal_loss_with_gamma_zero_is_weighted_cross_entropy():
    logits, labels = torch.randn(16, 5, dtype=F64), torch.randint(5, (16,))
    weight = torch.rand(5, dtype=F64) + 0.1
    expected = F.cross_entropy(logits, labels, weight=weight)
    assert torch.allclose(LF.focal_loss(logits, labels, 0.0, weight), expected)


@pytest.mark.parametrize("gamma", [0.5, 1.0, 2.0])
def test_focal_loss_gradcheck(gamma):
    logits = torch.randn(6, 4, dtype=F64, requires_grad=True)
    labels, weight = torch.randint(4, (6,)), torch.rand(4, dtype=F64) + 0.1
    assert torch.autograd.gradcheck(lambda z: LF.focal_loss(z, labels, gamma, weight), (logits,))


def test_focal_loss_gradient_stays_finite_on_a_certain_sample():
    logits = torch.tensor([[200.0, 0.0]], requires_grad=True)  # p_y rounds to exactly 1
    LF.focal_loss(logits, torch.tensor([0]), 0.5).backward()
    assert torch.isfinite(logits.grad).all()


def test_ldam_gradcheck():
    logits = torch.randn(5, 3, dtype=F64, requires_grad=True)
    labels, margins = torch.randint(3, (5,)), torch.tensor([0.1, 0.3, 0.5], dtype=F64)

    def loss(z):
        return F.cross_entropy(LF.ldam_logits(z, labels, margins, 30.0), labels)

    assert torch.autograd.gradcheck(loss, (logits,))


def test_weighted_mean_averages_as_torch_cross_entropy_does():
    logits, labels = torch.randn(10, 4, dtype=F64), torch.randint(4, (10,))
    weight = torch.rand(4, dtype=F64) + 0.1
    per_sample = F.cross_entropy(logits, labels, reduction="none")
    expected = F.cross_entropy(logits, labels, weight=weight)
    assert torch.allclose(LF.weighted_mean(per_sample, labels, weight), expected)


# -- BaGMar ------------------------------------------------------------------------------------

THETA = torch.tensor([0.5, 2.0, 0.0], dtype=F64)
PHI = torch.tensor([1.5, 0.25, 3.0], dtype=F64)


def naive_adjust(logits, labels, theta, phi, lambda1, lambda2, eps, form):
    out = logits.tolist()
    for i, y in enumerate(labels.tolist()):
        for j in range(len(out[i])):
            if form == "reference" or j != y:
                out[i][j] += lambda1 * math.log(theta[j] + eps) - lambda2 * math.log(phi[y] + eps)
    return out


@pytest.mark.parametrize("form", ["paper", "reference"])
def test_bagmar_adjust_by_hand(form):
    logits, labels = torch.tensor([[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]], dtype=F64), torch.tensor([2, 0])
    out = LF.bagmar_adjust(logits, labels, THETA, PHI, 1.2, 0.9, 1e-3, form)
    expected = naive_adjust(logits, labels, THETA.tolist(), PHI.tolist(), 1.2, 0.9, 1e-3, form)
    assert np.allclose(out.numpy(), expected, rtol=1e-12, atol=0)


def test_bagmar_adjust_paper_form_keeps_the_target_logit_exactly():
    logits, labels = torch.randn(8, 3), torch.randint(3, (8,))
    out = LF.bagmar_adjust(logits, labels, THETA, PHI, 1.2, 0.9, 1e-3, "paper")
    assert torch.equal(out.gather(1, labels[:, None]), logits.gather(1, labels[:, None]))
    assert out.dtype == logits.dtype


def test_bagmar_adjust_is_identity_at_zero_statistics_when_lambdas_match():
    logits, labels, zeros = torch.randn(4, 3), torch.randint(3, (4,)), torch.zeros(3, dtype=F64)
    for form in LF.BAGMAR_FORMS:
        assert torch.equal(LF.bagmar_adjust(logits, labels, zeros, zeros, 1.0, 1.0, 1e-3, form), logits)


def test_paper_form_is_logit_adjustment_with_a_target_margin():
    """Up to a per-row constant: z_j + lambda1 log(theta_j+eps), the target lowered by m_y = a_y - b_y."""
    logits, labels = torch.randn(6, 3, dtype=F64), torch.tensor([0, 1, 2, 2, 1, 0])
    a, b = 1.2 * torch.log(THETA + 1e-3), 0.9 * torch.log(PHI + 1e-3)
    margin_form = (logits + a).scatter_add(1, labels[:, None], (b - a)[labels][:, None])
    paper = LF.bagmar_adjust(logits, labels, THETA, PHI, 1.2, 0.9, 1e-3, "paper")
    assert torch.allclose(paper.log_softmax(1), margin_form.log_softmax(1))
    reference = LF.bagmar_adjust(logits, labels, THETA, PHI, 1.2, 0.9, 1e-3, "reference")
    assert torch.allclose(reference.log_softmax(1), (logits + a).log_softmax(1))  # phi drops out


def test_bagmar_adjust_rejects_an_unknown_form():
    with pytest.raises(ValueError, match="form"):
        LF.bagmar_adjust(torch.zeros(1, 3), torch.tensor([0]), THETA, PHI, form="papr")


@pytest.mark.parametrize("form", ["paper", "reference"])
def test_adjusted_cross_entropy_gradcheck(form):
    logits, labels = torch.randn(5, 3, dtype=F64, requires_grad=True), torch.randint(3, (5,))

    def loss(z):
        return F.cross_entropy(LF.bagmar_adjust(z, labels, THETA, PHI, 1.2, 0.9, 1e-3, form), labels)

    assert torch.autograd.gradcheck(loss, (logits,))


def test_gradient_stats_by_hand():
    """Rows p = (1/3, 1/3, 1/3) with y = 0 and p = (1/2, 1/4, 1/4) with y = 1, B = 2."""
    logits, labels = torch.tensor([[0.0, 0.0, 0.0], [math.log(2.0), 0.0, 0.0]]), torch.tensor([0, 1])
    pos, neg = gradient_stats(logits.log_softmax(1), labels, 2)
    assert pos.tolist() == pytest.approx([(2 / 3) / 2, (3 / 4) / 2, 0.0])
    assert neg.tolist() == pytest.approx([(1 / 3 + 1 / 3) / 2, (1 / 2 + 1 / 4) / 2, 0.0])
    assert pos.dtype == neg.dtype == F64


@pytest.mark.parametrize("global_batch", [None, 24])
def test_gradient_stats_match_autograds_gradient_of_the_mean_loss(global_batch):
    adjusted, labels = 3 * torch.randn(6, 4, dtype=F64), torch.tensor([0, 1, 1, 3, 3, 3])
    pos, neg = gradient_stats(adjusted.log_softmax(1), labels, global_batch or 6)
    expected_pos, expected_neg = brute_force_stats(adjusted, labels, global_batch)
    assert np.allclose(pos.numpy(), expected_pos, rtol=1e-12, atol=0)
    assert np.allclose(neg.numpy(), expected_neg, rtol=1e-12, atol=0)


@settings(max_examples=30, deadline=None)
@given(
    batch=st.integers(1, 6),
    classes=st.integers(2, 5),
    scale=st.floats(0.1, 30.0),
    seed=st.integers(0, 2**16),
)
def test_positive_and_negative_mass_are_equal_sample_by_sample(batch, classes, scale, seed):
    """For softmax cross-entropy |g_iy| = sum_{j != y} |g_ij|, so every class gets pos = neg."""
    generator = torch.Generator().manual_seed(seed)
    logits = scale * torch.randn(batch, classes, dtype=F64, generator=generator)
    labels = torch.randint(classes, (batch,), generator=generator)
    expected_pos, expected_neg = brute_force_stats(logits, labels)
    assert np.allclose(expected_pos, expected_neg, rtol=1e-9, atol=1e-15)
    pos, neg = gradient_stats(logits.log_softmax(1), labels, batch)
    assert np.allclose(pos.numpy(), expected_pos, rtol=1e-9, atol=1e-15)
    assert torch.equal(pos, neg)


def test_gradient_stats_carry_no_gradient():
    logits = torch.randn(4, 3, requires_grad=True)
    pos, neg = gradient_stats(logits.log_softmax(1), torch.tensor([0, 1, 2, 0]), 4)
    assert not pos.requires_grad and not neg.requires_grad


@pytest.mark.parametrize(
    ("mode", "statistic", "running"),
    [
        ("reference", [1.6, 2.2], [0.6, 0.2]),  # running += step; statistic += running
        ("sum", [1.1, 2.2], [0.5, 0.0]),
        ("ema", [0.91, 1.82], [0.5, 0.0]),  # 0.9 * statistic + 0.1 * step
    ],
)
def test_accumulate_by_hand(mode, statistic, running):
    out, out_running = torch.tensor([1.0, 2.0], dtype=F64), torch.tensor([0.5, 0.0], dtype=F64)
    LF.accumulate_(out, out_running, torch.tensor([0.1, 0.2], dtype=F64), mode, decay=0.9)
    assert out.tolist() == pytest.approx(statistic) and out_running.tolist() == pytest.approx(running)


def test_accumulate_rejects_an_unknown_mode():
    with pytest.raises(ValueError, match="accumulation"):
        LF.accumulate_(torch.zeros(2), torch.zeros(2), torch.zeros(2), "mean")


@pytest.mark.parametrize("form", ["paper", "reference"])
@pytest.mark.parametrize("lambdas", [(1.0, 1.0), (1.2, 0.9)])
def test_column_and_target_give_the_spec_softmax(form, lambdas):
    """z + column (+ target at y, paper form) differs from the spec's logits by a constant per row."""
    logits, labels = 3 * torch.randn(6, 3, dtype=F64), torch.tensor([0, 1, 2, 2, 1, 0])
    spec = LF.bagmar_adjust(logits, labels, THETA, PHI, *lambdas, 1e-3, form)
    reduced = logits + LF.bagmar_column(THETA, lambdas[0], 1e-3, F64)
    if form == "paper":
        target = LF.bagmar_target(THETA, PHI, *lambdas, 1e-3, F64)
        reduced = reduced.scatter_add(1, labels[:, None], target[labels][:, None])
    shift = spec - reduced
    assert torch.allclose(shift, shift[:, :1].expand_as(shift), rtol=0, atol=1e-12)
    assert torch.allclose(spec.log_softmax(1), reduced.log_softmax(1), rtol=0, atol=1e-12)


def test_column_keeps_theta_and_is_finite_for_huge_statistics():
    theta = torch.tensor([0.0, 1e12], dtype=F64)
    column = LF.bagmar_column(theta, 0.5, 1e-3, torch.float32)
    assert theta.tolist() == [0.0, 1e12] and column.dtype == torch.float32
    assert column.tolist() == pytest.approx([0.5 * math.log(1e-3), 0.5 * math.log(1e12)], rel=1e-6)
