"""Post-hoc re-balancing of a trained classifier: PN, tau-normalisation and logit adjustment.

Each method turns a model's outputs into scores whose argmax is the prediction; tau = 0 leaves the
prediction unchanged (for tau-norm, when the bias is passed).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

import torch
from torch import Tensor

from bagmar_cli.choices import PosthocMethod
from bagmar_cli.functional.priors import class_prior

_FLOOR = 1e-12  # smallest column sum, weight norm or prior we divide by or take the log of


def pn_column_sums(logits: Tensor) -> Tensor:
    """Column sums c_j = sum_i softmax(z_i)_j over an evaluation set, accumulated in float64."""
    return torch.softmax(logits, dim=1).sum(dim=0, dtype=torch.float64)


def pn_rescale(probs: Tensor, c: Tensor, tau: float) -> Tensor:
    """Scores p_ij / c_j^tau from probabilities; the factor is floored and capped so it stays finite."""
    factor = c.to(torch.float64).clamp_min(_FLOOR).pow(-tau)
    factor = factor.clamp_max(torch.finfo(probs.dtype).max).to(probs.dtype)
    return probs * factor


def pn_scores(logits: Tensor, c: Tensor, tau: float) -> Tensor:
    """Prediction normalisation: softmax(z) / c^tau, whose argmax is the PN prediction."""
    return pn_rescale(torch.softmax(logits, dim=1), c, tau)


def renormalise(scores: Tensor) -> Tensor:
    """Non-negative scores (PN's) as probabilities: each row divided by its sum, floored at the dtype's tiny."""
    return scores / scores.sum(dim=1, keepdim=True).clamp_min(torch.finfo(scores.dtype).tiny)


def tau_norm_factors(weight: Tensor, tau: float) -> Tensor:
    """Per-class factors ||w_j||^-tau (float64), with zero-norm rows floored."""
    norms: Tensor = weight.to(torch.float64).norm(dim=1)  # torch types Tensor.norm as returning Any
    return norms.clamp_min(_FLOOR).pow(-tau)


def tau_norm_weights(weight: Tensor, tau: float) -> Tensor:
    """Kang et al. (2020) tau-normalisation: each class row w_j divided by ||w_j||^tau."""
    return weight * tau_norm_factors(weight, tau)[:, None].to(weight.dtype)


def _add_bias(logits: Tensor, bias: Tensor | None) -> Tensor:
    """Logits plus the (unscaled) bias, or unchanged when bias is None."""
    return logits if bias is None else logits + bias.to(logits.dtype)


def tau_norm_logits(features: Tensor, weight: Tensor, bias: Tensor | None, tau: float) -> Tensor:
    """Logits f @ w_tau.T (+ bias, unscaled); pass bias=None to drop it as Kang et al. do."""
    return _add_bias(features @ tau_norm_weights(weight, tau).T.to(features.dtype), bias)


def tau_norm_rescale(raw_logits: Tensor, weight: Tensor, bias: Tensor | None, tau: float) -> Tensor:
    """The same logits from cached f @ W.T (no bias): column j times ||w_j||^-tau, no matmul per tau."""
    factors = tau_norm_factors(weight, tau).clamp_max(torch.finfo(raw_logits.dtype).max)
    factors = factors.to(raw_logits.dtype)
    if bias is None:
        return raw_logits * factors
    return torch.addcmul(bias.to(raw_logits.dtype), raw_logits, factors)  # one pass over N x C


def logit_adjust(logits: Tensor, prior: Tensor, tau: float) -> Tensor:
    """Menon et al. (2021) post-hoc logit adjustment: z - tau * log(pi)."""
    log_prior = prior.to(torch.float64).clamp_min(_FLOOR).log()
    return logits - (tau * log_prior).to(logits.dtype)


def _missing(method: str, **tensors: Tensor | None) -> ValueError:
    """The ValueError naming the inputs a method needs but did not get."""
    missing = [name for name, value in tensors.items() if value is None]
    return ValueError(f"post-hoc method {method!r} needs {', '.join(missing)}")


def _pn(
    tau: float,
    *,
    logits: Tensor,
    counts: Tensor | None,
    c: Tensor | None,
    features: Tensor | None,
    weight: Tensor | None,
    bias: Tensor | None,
) -> Tensor:
    """PN with c from the caller, or from these logits (the evaluation set) when c is None."""
    return pn_scores(logits, pn_column_sums(logits) if c is None else c, tau)


def _tau_norm(
    tau: float,
    *,
    logits: Tensor,
    counts: Tensor | None,
    c: Tensor | None,
    features: Tensor | None,
    weight: Tensor | None,
    bias: Tensor | None,
) -> Tensor:
    """Tau-norm from features and classifier weights; logits are not used."""
    if features is None or weight is None:
        raise _missing("tau-norm", features=features, weight=weight)
    return tau_norm_logits(features, weight, bias, tau)


def _logit_adjust(
    tau: float,
    *,
    logits: Tensor,
    counts: Tensor | None,
    c: Tensor | None,
    features: Tensor | None,
    weight: Tensor | None,
    bias: Tensor | None,
) -> Tensor:
    """Logit adjustment with the prior from training counts."""
    if counts is None:
        raise _missing("logit-adjust", counts=counts)
    return logit_adjust(logits, class_prior(counts), tau)


POSTHOC_METHODS: Mapping[PosthocMethod, Callable[..., Tensor]] = MappingProxyType(
    {PosthocMethod.PN: _pn, PosthocMethod.TAU_NORM: _tau_norm, PosthocMethod.LOGIT_ADJUST: _logit_adjust}
)
"""Post-hoc method -> function(tau, *, logits, counts, c, features, weight, bias) -> scores."""


def apply_posthoc(
    method: PosthocMethod | str,
    tau: float,
    *,
    logits: Tensor,
    counts: Tensor | None = None,
    c: Tensor | None = None,
    features: Tensor | None = None,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
) -> Tensor:
    """Scores of the named post-hoc method at strength tau; argmax over dim 1 gives predictions.

    ValueError for an unknown method (commands check theirs with `PosthocMethod.parse` first).
    """
    try:
        chosen = PosthocMethod(method)
    except ValueError:
        raise ValueError(f"unknown post-hoc method {method!r}; choose from {', '.join(POSTHOC_METHODS)}") from None
    return POSTHOC_METHODS[chosen](tau, logits=logits, counts=counts, c=c, features=features, weight=weight, bias=bias)
