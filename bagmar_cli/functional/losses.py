"""Loss math for long-tailed training: class priors and weights, focal, LDAM, and the BaGMar pieces.

Pure functions: tensors in, tensors out, no state. Per-class counts are clamped to >= 1 wherever a log
or a power needs it, so a class absent from the training split gives finite numbers, never inf or nan.
"""

from __future__ import annotations

import torch
from torch import Tensor

BAGMAR_FORMS = ("paper", "reference")
ACCUMULATIONS = ("reference", "sum", "ema")


def _clamped(counts: Tensor) -> Tensor:
    return counts.to(torch.float64).clamp_min(1.0)


def class_balanced_weights(counts: Tensor, beta: float) -> Tensor:
    """Cui et al. (2019) weights (1 - beta) / (1 - beta^n_j), normalised to sum to the class count."""
    n = _clamped(counts)
    log_beta = torch.tensor(beta, dtype=torch.float64).log()  # -inf for beta = 0: all weights equal
    weights = (1.0 - beta) / -torch.expm1(n * log_beta)
    return weights * (len(n) / weights.sum())


def log_prior(counts: Tensor) -> Tensor:
    """log pi_j with pi_j = n_j / N, the training class prior."""
    n = _clamped(counts)
    return torch.log(n / n.sum())


def ldam_margins(counts: Tensor, max_margin: float) -> Tensor:
    """LDAM margins m_j proportional to n_j^(-1/4), scaled so that the largest is max_margin."""
    margins = _clamped(counts).pow(-0.25)
    return margins * (max_margin / margins.max())


def ldam_logits(logits: Tensor, labels: Tensor, margins: Tensor, scale: float) -> Tensor:
    """Logits with the target's margin subtracted, times the scale s (Cao et al. 2019)."""
    target_margin = margins.to(logits.dtype).index_select(0, labels).unsqueeze(1)
    return logits.scatter_add(1, labels.unsqueeze(1), -target_margin) * scale


def weighted_mean(values: Tensor, labels: Tensor, weight: Tensor | None = None) -> Tensor:
    """Mean of per-sample values, weighted by weight[label] as torch's cross-entropy weights them."""
    if weight is None:
        return values.mean()
    w = weight.to(values.dtype)[labels]
    return (w * values).sum() / w.sum()


def focal_loss(
    logits: Tensor, labels: Tensor, gamma: float, weight: Tensor | None = None, smoothing: float = 0.0
) -> Tensor:
    """Focal loss -(1 - p_y)^gamma log p_y (Lin et al. 2017), averaged as weighted cross-entropy is; with label
    `smoothing` ε, (1 - ε) times it plus ε times the mean over classes c of -(1 - p_c)^gamma log p_c."""
    log_probs = logits.log_softmax(1)
    terms = _focal_terms(log_probs, gamma, logits.dtype)
    loss = weighted_mean(terms.gather(1, labels.unsqueeze(1)).squeeze(1), labels, weight)
    if smoothing == 0.0:
        return loss
    return (1 - smoothing) * loss + smoothing * weighted_mean(terms.mean(1), labels, weight)


def _focal_terms(log_probs: Tensor, gamma: float, dtype: torch.dtype) -> Tensor:
    """-(1 - p_c)^gamma log p_c for every class c."""
    # 1 - p from expm1 keeps precision near p = 1; the floor keeps d/dp (1 - p)^gamma finite there.
    miss = (-torch.expm1(log_probs)).clamp_min(torch.finfo(dtype).tiny)
    return -miss.pow(gamma) * log_probs


def bagmar_adjust(
    logits: Tensor,
    labels: Tensor,
    theta: Tensor,
    phi: Tensor,
    lambda1: float = 1.0,
    lambda2: float = 1.0,
    eps: float = 1e-3,
    form: str = "paper",
) -> Tensor:
    """BaGMar logits z_ij + lambda1 log(theta_j + eps) - lambda2 log(phi_y_i + eps).

    The "paper" form leaves the target logit z_iy as it is; the "reference" form (the authors' code)
    adjusts every logit. Only the C-length terms are float64; the B x C sum is in the logits' dtype.
    The spec's statement term by term, kept as the reference the tests pin `BaGMarLoss`'s fast path
    (`bagmar_column` + `bagmar_target`) against; training does not call it.
    """
    if form not in BAGMAR_FORMS:
        raise ValueError(f"unknown BaGMar form {form!r}; choose from {', '.join(BAGMAR_FORMS)}")
    column = (lambda1 * torch.log(theta + eps)).to(logits.dtype)
    row = (lambda2 * torch.log(phi + eps)).to(logits.dtype).index_select(0, labels)
    offset = column - row.unsqueeze(1)
    if form == "paper":
        offset.scatter_(1, labels.unsqueeze(1), 0.0)
    return offset.add_(logits)  # into the fresh offset: one B x C allocation, not two


def bagmar_column(theta: Tensor, lambda1: float, eps: float, dtype: torch.dtype) -> Tensor:
    """lambda1 log(theta_j + eps), the per-class term BaGMar adds to every logit column, in `dtype`."""
    column = torch.add(theta, eps, out=torch.empty_like(theta, dtype=dtype)).log_()
    return column if lambda1 == 1.0 else column.mul_(lambda1)


def bagmar_target(theta: Tensor, phi: Tensor, lambda1: float, lambda2: float, eps: float, dtype: torch.dtype) -> Tensor:
    """lambda2 log(phi_k + eps) - lambda1 log(theta_k + eps): the paper form's extra term on a class-k target.

    Softmax ignores a constant added to a whole row. So the paper form's logits equal, up to the row
    constant -lambda2 log(phi_y + eps), z_ij + column_j for j != y and z_iy + column_y + target_y at
    the target: the same loss, gradient and statistics for one B x C add and one scatter of B values.
    The reference form's row term cancels completely: its logits are z + column.
    """
    return (lambda2 * torch.log(phi + eps) - lambda1 * torch.log(theta + eps)).to(dtype)


def bagmar_gradient_mass(log_probs: Tensor, labels: Tensor, global_batch: int) -> Tensor:
    """Per-class gradient mass of the mean cross-entropy on the adjusted logits (pos = neg).

    log_probs is the log-softmax of the adjusted logits (the cross-entropy's own, reused). With
    g = (p - onehot(y)) / B, B the global batch: pos_j sums |g_ij| = (1 - p_ij) / B over samples i of
    class j; neg_k sums the off-target |g_ij| = p_ij / B over j != k and samples of class k, which is
    (1 - p_ik) / B per sample too, as a softmax row sums to 1. So pos = neg, computed in O(B + C), in
    the log-probabilities' dtype (they carry no more precision); the statistics add it up in float64.
    """
    minus_mass = log_probs.detach().gather(1, labels.unsqueeze(1)).view(-1).expm1_()  # p_iy - 1, precise near 1
    return minus_mass.new_zeros(log_probs.shape[1]).index_add_(0, labels, minus_mass, alpha=-1.0 / global_batch)


def accumulate_(statistic: Tensor, running: Tensor, step: Tensor, mode: str = "reference", decay: float = 0.99) -> None:
    """One step of a BaGMar statistic, in place on `statistic` and `running`.

    reference (the authors' code): running += step, statistic += running. sum: statistic += step.
    ema: statistic = decay * statistic + (1 - decay) * step. Only "reference" moves the running total.
    """
    if mode == "reference":
        statistic.add_(running.add_(step))
    elif mode == "sum":
        statistic.add_(step)
    elif mode == "ema":
        statistic.lerp_(step.to(statistic.dtype), 1.0 - decay)
    else:
        raise ValueError(f"unknown accumulation {mode!r}; choose from {', '.join(ACCUMULATIONS)}")
