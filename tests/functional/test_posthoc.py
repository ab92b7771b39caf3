"""Post-hoc methods against numbers worked out by hand."""

import math

import numpy as np
import pytest
import torch

from bagmar_cli.functional.posthoc import (
    POSTHOC_METHODS,
    apply_posthoc,
    logit_adjust,
    pn_column_sums,
    pn_scores,
    renormalise,
    tau_norm_logits,
    tau_norm_rescale,
    tau_norm_weights,
)
from bagmar_cli.functional.priors import class_prior

# softmax(log P) = P for rows that sum to 1, so the probabilities are the numbers written here.
P = np.array([[0.6, 0.3, 0.1], [0.5, 0.4, 0.1], [0.2, 0.2, 0.6]])
LOGITS = torch.tensor(np.log(P))


def test_pn_column_sums_by_hand():
    assert pn_column_sums(LOGITS).tolist() == pytest.approx([1.3, 0.9, 0.8])


def test_pn_scores_by_hand_flip_the_head_prediction():
    c = torch.tensor([1.3, 0.9, 0.8], dtype=torch.float64)
    expected = [
        [0.6 / 1.3, 0.3 / 0.9, 0.1 / 0.8],
        [0.5 / 1.3, 0.4 / 0.9, 0.1 / 0.8],
        [0.2 / 1.3, 0.2 / 0.9, 0.6 / 0.8],
    ]
    scores = pn_scores(LOGITS, c, 1.0)
    np.testing.assert_allclose(scores.numpy(), expected, rtol=1e-12)
    assert LOGITS.argmax(1).tolist() == [0, 0, 2]
    assert scores.argmax(1).tolist() == [0, 1, 2]  # 0.5/1.3 = 0.385 < 0.4/0.9 = 0.444


def test_pn_half_tau_by_hand():
    c = pn_column_sums(LOGITS)
    expected = P / np.sqrt([1.3, 0.9, 0.8])
    np.testing.assert_allclose(pn_scores(LOGITS, c, 0.5).numpy(), expected, rtol=1e-12)


def test_renormalised_pn_scores_are_rows_summing_to_one():
    c = pn_column_sums(LOGITS)
    raw = P / np.array([1.3, 0.9, 0.8])
    probs = renormalise(pn_scores(LOGITS, c, 1.0))
    np.testing.assert_allclose(probs.numpy(), raw / raw.sum(1, keepdims=True), rtol=1e-12)


def test_pn_tau_zero_is_plain_argmax():
    logits = torch.randn(200, 7, generator=torch.Generator().manual_seed(0))
    scores = pn_scores(logits, pn_column_sums(logits), 0.0)
    assert torch.equal(scores.argmax(1), logits.argmax(1))
    torch.testing.assert_close(scores, torch.softmax(logits, 1))


@pytest.mark.parametrize("tau", [1.0, 2.0, 5.0, -3.0])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_pn_zero_column_sum_stays_finite(tau, dtype):
    logits = torch.tensor([[0.0, 200.0, -200.0], [1.0, 2.0, -500.0]], dtype=dtype)
    c = torch.tensor([0.0, 1.5, 0.0], dtype=torch.float64)
    scores = pn_scores(logits, c, tau)
    assert torch.isfinite(scores).all()
    assert torch.isfinite(renormalise(scores)).all()


def test_tau_norm_tau_zero_is_identity():
    weight = torch.randn(5, 4, dtype=torch.float64)
    torch.testing.assert_close(tau_norm_weights(weight, 0.0), weight)


def test_tau_norm_tau_one_gives_unit_rows():
    weight = torch.randn(5, 4, dtype=torch.float64) * torch.arange(1, 6, dtype=torch.float64)[:, None]
    norms = tau_norm_weights(weight, 1.0).norm(dim=1)
    torch.testing.assert_close(norms, torch.ones(5, dtype=torch.float64))


def test_tau_norm_by_hand():
    weight = torch.tensor([[3.0, 4.0], [0.0, 2.0]], dtype=torch.float64)  # row norms 5 and 2
    half = tau_norm_weights(weight, 0.5)
    np.testing.assert_allclose(half.numpy(), [[3 / math.sqrt(5), 4 / math.sqrt(5)], [0, 2 / math.sqrt(2)]])
    features = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    bias = torch.tensor([0.5, -0.5], dtype=torch.float64)
    logits = tau_norm_logits(features, weight, bias, 1.0)
    np.testing.assert_allclose(logits.numpy(), [[0.6 + 0.5, 0.0 - 0.5], [0.8 + 0.5, 1.0 - 0.5]])
    no_bias = tau_norm_logits(features, weight, None, 1.0)
    np.testing.assert_allclose(no_bias.numpy(), [[0.6, 0.0], [0.8, 1.0]])


@pytest.mark.parametrize("tau", [0.0, 0.7, 1.0, 2.0])
def test_rescaling_cached_logits_equals_normalising_weights(tau):
    inputs = _inputs()
    features, weight, bias = inputs["features"], inputs["weight"], inputs["bias"]
    raw = features @ weight.T
    for b in (bias, None):
        expected = tau_norm_logits(features, weight, b, tau)
        torch.testing.assert_close(tau_norm_rescale(raw, weight, b, tau), expected)


def test_tau_norm_zero_row_stays_finite():
    weight = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    assert torch.isfinite(tau_norm_weights(weight, 1.0)).all()


def test_logit_adjust_by_hand():
    counts = torch.tensor([6, 3, 1])
    logits = torch.tensor([[1.0, 1.0, 1.0]], dtype=torch.float64)
    adjusted = logit_adjust(logits, class_prior(counts), 1.0)
    expected = [1 - math.log(0.6), 1 - math.log(0.3), 1 - math.log(0.1)]
    assert adjusted[0].tolist() == pytest.approx(expected)
    half = logit_adjust(logits, class_prior(counts), 0.5)
    assert half[0].tolist() == pytest.approx([1 - 0.5 * math.log(p) for p in (0.6, 0.3, 0.1)])


def test_logit_adjust_zero_count_stays_finite():
    adjusted = logit_adjust(torch.zeros(1, 3), class_prior(torch.tensor([5, 0, 3])), 1.0)
    assert torch.isfinite(adjusted).all()


def _inputs(num=40, classes=6, dim=5):
    gen = torch.Generator().manual_seed(1)
    features = torch.randn(num, dim, generator=gen, dtype=torch.float64)
    weight = torch.randn(classes, dim, generator=gen, dtype=torch.float64)
    bias = torch.randn(classes, generator=gen, dtype=torch.float64)
    counts = torch.tensor([500, 200, 60, 25, 8, 2])
    return dict(logits=features @ weight.T + bias, counts=counts, features=features, weight=weight, bias=bias)


@pytest.mark.parametrize("method", sorted(POSTHOC_METHODS))
def test_every_method_at_tau_zero_keeps_predictions(method):
    inputs = _inputs()
    scores = apply_posthoc(method, 0.0, **inputs)
    assert torch.equal(scores.argmax(1), inputs["logits"].argmax(1))


@pytest.mark.parametrize("method", sorted(POSTHOC_METHODS))
def test_every_method_at_large_tau_favours_the_tail(method):
    inputs = _inputs()
    plain = inputs["logits"].argmax(1).to(torch.float64).mean()
    shifted = apply_posthoc(method, 2.0, **inputs).argmax(1).to(torch.float64).mean()
    assert shifted != plain  # a different prediction for some sample


def test_dispatch_matches_the_functions():
    inputs = _inputs()
    logits = inputs["logits"]
    c = pn_column_sums(logits)
    torch.testing.assert_close(apply_posthoc("pn", 1.0, logits=logits), pn_scores(logits, c, 1.0))
    torch.testing.assert_close(
        apply_posthoc("logit-adjust", 1.0, logits=logits, counts=inputs["counts"]),
        logit_adjust(logits, class_prior(inputs["counts"]), 1.0),
    )


def test_pn_uses_the_given_column_sums():
    inputs = _inputs()
    c = torch.ones(6, dtype=torch.float64)
    torch.testing.assert_close(
        apply_posthoc("pn", 1.0, logits=inputs["logits"], c=c), torch.softmax(inputs["logits"], 1)
    )


def test_unknown_method_is_a_value_error():
    """Pure code raises ValueError; commands check the name first (PosthocMethod.parse) and say it as a usage error."""
    with pytest.raises(ValueError, match="pn"):
        apply_posthoc("temperature", 1.0, logits=torch.zeros(1, 2))


@pytest.mark.parametrize("method", ["tau-norm", "logit-adjust"])
def test_missing_inputs_are_named(method):
    with pytest.raises(ValueError, match="needs"):
        apply_posthoc(method, 1.0, logits=torch.zeros(1, 2))
