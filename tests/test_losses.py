"""The loss registry and its modules: every loss builds and trains; BaGMar's statistics behave as specified."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load, save

from bagmar_cli.errors import SettingError
from bagmar_cli.functional import losses as LF
from bagmar_cli.losses import BaGMarLoss, build_loss, loss_names
from bagmar_cli.settings import LossSettings

F64 = torch.float64
COUNTS = [500, 120, 30, 8, 1]


def build(name: str, counts=COUNTS, **settings) -> torch.nn.Module:
    return build_loss(LossSettings(name=name, **settings), counts)


def batch(size: int = 8, classes: int = 5, dtype=torch.float32, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    logits = 2 * torch.randn(size, classes, generator=generator).to(dtype)
    return logits.requires_grad_(), torch.randint(classes, (size,), generator=generator)


# -- registry ----------------------------------------------------------------------------------


def test_the_documented_losses_are_registered():
    assert {"ce", "focal", "ldam", "balanced_softmax", "logit_adjusted", "bagmar"} <= set(loss_names())


@pytest.mark.parametrize("name", loss_names())
@pytest.mark.parametrize("reweight", ["none", "cb"])
def test_every_loss_builds_trains_and_evaluates(name, reweight):
    loss_fn = build(name, reweight=reweight, reweight_epoch=1)
    logits, labels = batch()
    for epoch in range(3):
        loss_fn.set_epoch(epoch)
        loss = loss_fn(logits, labels)
        assert loss.shape == () and torch.isfinite(loss)
        loss.backward()
        assert torch.isfinite(logits.grad).all()
    assert torch.isfinite(loss_fn.eval()(logits, labels))


@pytest.mark.parametrize("name", loss_names())
def test_empty_classes_give_finite_losses(name):
    loss_fn = build(name, counts=[50, 0, 3, 0, 1], reweight="cb")
    logits, labels = batch()
    for _ in range(3):
        loss = loss_fn(logits, labels)
        loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()


def test_an_unknown_loss_is_a_usage_error_with_a_suggestion():
    with pytest.raises(SettingError, match=r"unknown loss 'bagmr' \(did you mean 'bagmar'\?\); choose from .*ce"):
        build("bagmr")


def test_a_parameter_the_chosen_loss_ignores_is_warned_about_once(capsys):
    build("ce", focal_gamma=2.0, lambda1=1.2)
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        "Warning: loss.focal_gamma = 2.0 has no effect: loss 'ce' does not use it",
        "Warning: loss.lambda1 = 1.2 has no effect: loss 'ce' does not use it",
    ]


def test_parameters_the_loss_uses_or_left_at_their_defaults_give_no_warning(capsys):
    build("bagmar", lambda1=1.2, lambda2=0.9, reweight="cb", reweight_epoch=2)
    build("focal", focal_gamma=2.0, lambda1=1.0)  # lambda1 at its default: nothing was asked for
    assert capsys.readouterr().err == ""


def test_every_preset_sets_only_what_its_loss_reads():
    from bagmar_cli.losses import ignored_parameters
    from bagmar_cli.settings import load_settings, preset_names

    assert {name: ignored_parameters(load_settings(preset=name).loss) for name in preset_names()} == {
        name: [] for name in preset_names()
    }


def test_an_unrelated_name_gets_the_list_without_a_guess():
    with pytest.raises(SettingError) as error:
        build("xyz")
    assert "did you mean" not in str(error.value) and "balanced_softmax" in str(error.value)


# -- baselines ---------------------------------------------------------------------------------

HAND_LOGITS = torch.tensor([[1.0, 0.0], [0.0, 2.0], [0.5, 0.5]])
HAND_LABELS = torch.tensor([0, 1, 0])


def mean_ce(rows, labels, weight=None) -> float:
    """Cross-entropy -log softmax(row)[y], weighted mean, in plain Python."""
    weight = weight or [1.0] * len(rows[0])
    terms = [(weight[y], math.log(sum(math.exp(v) for v in row)) - row[y]) for row, y in zip(rows, labels, strict=True)]
    return sum(w * t for w, t in terms) / sum(w for w, _ in terms)


def test_deferred_reweighting_switches_on_at_the_epoch():
    counts, beta = [9, 1], 0.9
    raw = [(1 - beta) / (1 - beta**n) for n in counts]
    weight = [2 * w / sum(raw) for w in raw]
    loss_fn = build("ce", counts=counts, reweight="cb", cb_beta=beta, reweight_epoch=2)
    for epoch, expected_weight in [(0, None), (1, None), (2, weight), (5, weight)]:
        loss_fn.set_epoch(epoch)
        expected = mean_ce(HAND_LOGITS.tolist(), HAND_LABELS.tolist(), expected_weight)
        assert loss_fn(HAND_LOGITS, HAND_LABELS).item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("name", loss_names())
def test_class_balanced_reweighting_changes_every_loss(name):
    logits, labels = batch()
    plain = build(name)(logits, labels)
    reweighted = build(name, reweight="cb")(logits, labels)
    assert not torch.isclose(plain, reweighted)


def test_ldam_on_a_scaled_cosine_head_is_ldam_on_the_cosines():
    """A head that hands in h cos gives the loss and cosine gradient of s (cos - m_y) all the same."""
    cosines = torch.rand(8, 5, generator=torch.Generator().manual_seed(3), dtype=F64) * 2 - 1
    labels = torch.tensor([0, 1, 2, 3, 4, 0, 1, 2])
    grads, losses = [], []
    for head_scale in (1.0, 30.0, 7.5):
        z = cosines.clone().requires_grad_()
        loss_fn = build_loss(LossSettings(name="ldam", ldam_scale=30.0), COUNTS, head_scale)
        loss = loss_fn(z * head_scale, labels)
        loss.backward()
        losses.append(loss.item())
        grads.append(z.grad)
    assert losses == pytest.approx([losses[0]] * 3, rel=1e-7)  # the margins are stored in float32
    assert all(torch.allclose(g, grads[0], rtol=1e-6, atol=1e-9) for g in grads)


def test_focal_module_matches_the_hand_value():
    loss_fn = build("focal", counts=[1, 1], focal_gamma=2.0)
    p = [1 / (1 + math.exp(-1)), 1 / (1 + math.exp(-2)), 0.5]  # probability of the label in each row
    expected = sum((1 - q) ** 2 * -math.log(q) for q in p) / 3
    assert loss_fn(HAND_LOGITS, HAND_LABELS).item() == pytest.approx(expected, rel=1e-6)


def test_ldam_module_matches_the_hand_value():
    loss_fn = build("ldam", counts=[10000, 1], ldam_max_margin=0.5, ldam_scale=10.0)
    margins = [0.05, 0.5]  # 10000^(-1/4) = 0.1 against 1^(-1/4) = 1, scaled to a largest 0.5
    rows = [
        [10 * (v - (margins[y] if j == y else 0.0)) for j, v in enumerate(row)]
        for row, y in zip(HAND_LOGITS.tolist(), HAND_LABELS.tolist(), strict=True)
    ]
    assert loss_fn(HAND_LOGITS, HAND_LABELS).item() == pytest.approx(mean_ce(rows, HAND_LABELS.tolist()), rel=1e-6)


def test_balanced_softmax_adds_log_counts_in_training_only():
    loss_fn = build("balanced_softmax", counts=[4, 1])
    rows = [[a + math.log(4.0), b] for a, b in HAND_LOGITS.tolist()]
    assert loss_fn(HAND_LOGITS, HAND_LABELS).item() == pytest.approx(mean_ce(rows, HAND_LABELS.tolist()), rel=1e-6)
    plain = mean_ce(HAND_LOGITS.tolist(), HAND_LABELS.tolist())
    assert loss_fn.eval()(HAND_LOGITS, HAND_LABELS).item() == pytest.approx(plain, rel=1e-6)


def test_logit_adjusted_adds_tau_log_prior():
    loss_fn = build("logit_adjusted", counts=[3, 1], la_tau=2.0)
    rows = [[a + 2 * math.log(0.75), b + 2 * math.log(0.25)] for a, b in HAND_LOGITS.tolist()]
    assert loss_fn(HAND_LOGITS, HAND_LABELS).item() == pytest.approx(mean_ce(rows, HAND_LABELS.tolist()), rel=1e-6)


def test_logit_adjusted_at_tau_one_is_balanced_softmax():
    """Menon et al. 2021: tau = 1 adds log pi_j = log n_j - log N, the same softmax as log n_j."""
    logits, labels = batch()
    logit_adjusted = build("logit_adjusted", la_tau=1.0)(logits, labels)
    assert torch.allclose(logit_adjusted, build("balanced_softmax")(logits, labels))


# -- BaGMar: against a plain numpy implementation of the spec -----------------------------------


def numpy_bagmar(batches, classes, lambda1, lambda2, eps, accumulation, form, decay):
    """The spec, loop by loop: adjust with the old statistics, CE, |gradient| masses, accumulate."""
    theta, phi, run_theta, run_phi = (np.zeros(classes) for _ in range(4))
    losses = []
    for logits, labels in batches:
        z, y, size = logits.detach().numpy().astype(np.float64).copy(), labels.numpy(), len(labels)
        for i in range(size):
            for j in range(classes):
                if form == "reference" or j != y[i]:
                    z[i, j] += lambda1 * math.log(theta[j] + eps) - lambda2 * math.log(phi[y[i]] + eps)
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        losses.append(np.mean([-math.log(p[i, y[i]]) for i in range(size)]))
        g = (p - np.eye(classes)[y]) / size
        pos, neg = np.zeros(classes), np.zeros(classes)
        for i in range(size):
            pos[y[i]] += abs(g[i, y[i]])
            neg[y[i]] += sum(abs(g[i, j]) for j in range(classes) if j != y[i])
        if accumulation == "reference":
            run_theta, run_phi = run_theta + pos, run_phi + neg
            theta, phi = theta + run_theta, phi + run_phi
        elif accumulation == "sum":
            theta, phi = theta + pos, phi + neg
        else:
            theta, phi = decay * theta + (1 - decay) * pos, decay * phi + (1 - decay) * neg
    return losses, theta, phi


@pytest.mark.parametrize("accumulation", ["reference", "sum", "ema"])
@pytest.mark.parametrize("form", ["paper", "reference"])
def test_bagmar_follows_the_spec_step_by_step(accumulation, form):
    batches = [batch(6, 4, F64, seed) for seed in range(4)]
    kwargs = dict(lambda1=1.2, lambda2=0.9, eps=1e-3, accumulation=accumulation, form=form, ema_decay=0.9)
    loss_fn = BaGMarLoss(4, **kwargs)
    losses = [loss_fn(logits, labels).item() for logits, labels in batches]
    expected, theta, phi = numpy_bagmar(batches, 4, *kwargs.values())
    assert np.allclose(losses, expected, rtol=1e-10)
    assert np.allclose(loss_fn.theta.numpy(), theta, rtol=1e-10)
    assert np.allclose(loss_fn.phi.numpy(), phi, rtol=1e-10)


# One step from theta = phi = 1, running totals 0.5, lambda1 = lambda2: the logits are not moved, so
# rows p = (1/3, 1/3, 1/3) with y = 0 and p = (1/2, 1/4, 1/4) with y = 1 give, with B = 2,
# pos = neg = ((2/3) / 2, (3/4) / 2, 0) = (1/3, 3/8, 0).
HAND_STEP = {
    "reference": [1 + 0.5 + 1 / 3, 1 + 0.5 + 3 / 8, 1 + 0.5],
    "sum": [1 + 1 / 3, 1 + 3 / 8, 1.0],
    "ema": [0.9 + 0.1 / 3, 0.9 + 0.1 * 3 / 8, 0.9],
}


@pytest.mark.parametrize("accumulation", list(HAND_STEP))
def test_one_bagmar_step_by_hand(accumulation):
    loss_fn = BaGMarLoss(3, accumulation=accumulation, ema_decay=0.9)
    ones = torch.ones(3, dtype=F64)
    loss_fn.load_state_dict({"theta": ones, "phi": ones, "running_theta": ones / 2, "running_phi": ones / 2})
    logits = torch.tensor([[0.0, 0.0, 0.0], [math.log(2.0), 0.0, 0.0]])
    loss = loss_fn(logits, torch.tensor([0, 1]))
    assert loss.item() == pytest.approx(math.log(12.0) / 2)  # (-log(1/3) - log(1/4)) / 2
    assert loss_fn.theta.tolist() == pytest.approx(HAND_STEP[accumulation])
    assert loss_fn.phi.tolist() == pytest.approx(HAND_STEP[accumulation])


def test_with_frozen_statistics_the_loss_is_a_logit_adjusted_cross_entropy():
    theta, phi = torch.tensor([3.0, 0.5, 0.01], dtype=F64), torch.tensor([1.0, 0.2, 4.0], dtype=F64)
    loss_fn = BaGMarLoss(3, lambda1=1.2, lambda2=0.9)
    loss_fn.load_state_dict({"theta": theta, "phi": phi, "running_theta": theta, "running_phi": phi})
    logits, labels = HAND_LOGITS.tolist(), [2, 0, 1]
    rows = [
        [
            v + (0.0 if j == y else 1.2 * math.log(theta[j] + 1e-3) - 0.9 * math.log(phi[y] + 1e-3))
            for j, v in enumerate([*row, -1.0])
        ]
        for row, y in zip(logits, labels, strict=True)
    ]
    inputs = torch.tensor([[*row, -1.0] for row in logits], dtype=F64)
    assert loss_fn(inputs, torch.tensor(labels)).item() == pytest.approx(mean_ce(rows, labels), rel=1e-12)


def test_the_statistics_of_a_step_are_used_from_the_next_step_on():
    loss_fn = BaGMarLoss(5, lambda1=1.2, lambda2=0.9)
    (first, y1), (second, y2) = batch(seed=1), batch(seed=2)
    zeros = torch.zeros(5, dtype=F64)
    expected = F.cross_entropy(LF.bagmar_adjust(first, y1, zeros, zeros, 1.2, 0.9), y1)
    assert torch.allclose(loss_fn(first, y1), expected)
    theta, phi = loss_fn.theta.clone(), loss_fn.phi.clone()
    assert theta.sum() > 0
    expected = F.cross_entropy(LF.bagmar_adjust(second, y2, theta, phi, 1.2, 0.9), y2)
    assert torch.allclose(loss_fn(second, y2), expected)
    assert not torch.equal(loss_fn.theta, theta)


@pytest.mark.parametrize("accumulation", ["reference", "sum", "ema"])
def test_theta_equals_phi_after_any_number_of_steps(accumulation):
    loss_fn = BaGMarLoss(5, lambda1=1.2, lambda2=0.9, accumulation=accumulation)
    for seed in range(6):
        loss_fn(*batch(seed=seed))
        assert torch.allclose(loss_fn.theta, loss_fn.phi, rtol=1e-12, atol=0)
    assert (loss_fn.theta > 0).any()


@pytest.mark.parametrize(("lambdas", "same"), [((1.0, 1.0), True), ((0.7, 0.7), True), ((1.2, 0.9), False)])
def test_both_forms_agree_when_the_lambdas_do_and_only_then(lambdas, same):
    """With theta = phi the reference form's target term lambda (log(theta_y+eps) - log(phi_y+eps)) is 0."""
    paper, reference = (BaGMarLoss(5, *lambdas, form=form) for form in ("paper", "reference"))
    for seed in range(4):
        logits, labels = batch(seed=seed)
        assert torch.isclose(paper(logits, labels), reference(logits, labels), rtol=1e-6).item() == same
    adjusted = LF.bagmar_adjust(logits, labels, reference.theta, reference.phi, *lambdas, form="reference")
    target_moved = adjusted.gather(1, labels[:, None]) - logits.gather(1, labels[:, None])
    assert torch.allclose(target_moved, torch.zeros(()), atol=1e-6) == same


def spec_loss(loss_fn, logits, labels):
    adjusted = LF.bagmar_adjust(
        logits, labels, loss_fn.theta, loss_fn.phi, loss_fn.lambda1, loss_fn.lambda2, loss_fn.eps, loss_fn.form
    )
    return F.cross_entropy(adjusted, labels)


def test_paper_form_follows_statistics_that_differ_however_they_were_changed():
    """Equal lambdas skip the target term only while theta = phi; loads and in-place edits are noticed."""
    loss_fn = BaGMarLoss(5)
    for seed in range(2):
        loss_fn(*batch(seed=seed))
    theta = torch.tensor([3.0, 0.5, 0.01, 2.0, 1.0], dtype=F64)
    state = {"theta": theta, "phi": theta.flip(0), "running_theta": theta, "running_phi": theta}
    loss_fn.load_state_dict(state)
    logits, labels = batch(dtype=F64, seed=3)
    expected = spec_loss(loss_fn, logits, labels)
    assert torch.allclose(loss_fn(logits, labels), expected, rtol=1e-12)
    loss_fn.phi.copy_(loss_fn.theta)
    loss_fn.running_phi.copy_(loss_fn.running_theta)
    logits, labels = batch(dtype=F64, seed=4)
    expected = spec_loss(loss_fn, logits, labels)  # before the call, which moves the statistics
    assert torch.allclose(loss_fn(logits, labels), expected, rtol=1e-12)
    loss_fn.phi.mul_(3.0)  # in place, behind the loss's back
    logits, labels = batch(dtype=F64, seed=5)
    expected = spec_loss(loss_fn, logits, labels)
    assert torch.allclose(loss_fn(logits, labels), expected, rtol=1e-12)


def test_paper_form_with_equal_lambdas_skips_the_zero_target_term(monkeypatch):
    loss_fn = BaGMarLoss(5)

    def fail(*args):
        raise AssertionError("target term computed although theta = phi")

    monkeypatch.setattr(LF, "bagmar_target", fail)
    for seed in range(4):
        logits, labels = batch(dtype=F64, seed=seed)
        expected = spec_loss(loss_fn, logits, labels)
        assert torch.allclose(loss_fn(logits, labels), expected, rtol=1e-12)


def test_half_precision_logits_with_large_statistics_give_a_finite_loss():
    loss_fn = BaGMarLoss(5)
    big = torch.full((5,), 1e9, dtype=F64)
    loss_fn.load_state_dict({"theta": big, "phi": big, "running_theta": big, "running_phi": big})
    logits, labels = batch(seed=1)
    loss = loss_fn(logits.bfloat16(), labels)
    assert torch.isfinite(loss) and loss.item() == pytest.approx(F.cross_entropy(logits, labels).item(), rel=1e-2)


@pytest.mark.parametrize("form", ["paper", "reference"])
def test_the_gradient_matches_autograd_of_the_naive_formula(form):
    loss_fn = BaGMarLoss(5, lambda1=1.2, lambda2=0.9, form=form)
    for seed in range(3):
        loss_fn(*batch(seed=seed))
    theta, phi = loss_fn.theta.clone(), loss_fn.phi.clone()
    logits, labels = batch(dtype=F64, seed=9)
    loss_fn(logits, labels).backward()
    naive = logits.detach().clone().requires_grad_()
    offset = 1.2 * torch.log(theta + 1e-3)[None, :] - 0.9 * torch.log(phi[labels] + 1e-3)[:, None]
    if form == "paper":
        offset = offset * (1 - F.one_hot(labels, 5))
    F.cross_entropy(naive + offset, labels).backward()
    assert torch.allclose(logits.grad, naive.grad, rtol=1e-12, atol=1e-15)


def test_eval_mode_is_plain_cross_entropy_and_leaves_the_statistics_alone():
    loss_fn = BaGMarLoss(5)
    loss_fn(*batch(seed=1))
    before = {k: v.clone() for k, v in loss_fn.state_dict().items()}
    logits, labels = batch(seed=2)
    assert torch.allclose(loss_fn.eval()(logits, labels), F.cross_entropy(logits, labels))
    assert all(torch.equal(before[k], v) for k, v in loss_fn.state_dict().items())


def test_statistics_survive_a_safetensors_round_trip():
    loss_fn = BaGMarLoss(5, accumulation="reference")
    for seed in range(3):
        loss_fn(*batch(seed=seed))
    state = loss_fn.state_dict()
    assert set(state) == {"theta", "phi", "running_theta", "running_phi"}
    assert all(v.dtype == F64 and v.shape == (5,) for v in state.values())  # O(C), never C x C
    resumed = BaGMarLoss(5, accumulation="reference")
    resumed.load_state_dict(load(save(state)))
    logits, labels = batch(seed=7)
    assert torch.equal(resumed(logits, labels), loss_fn(logits, labels))
    assert all(
        torch.equal(a, b) for a, b in zip(resumed.state_dict().values(), loss_fn.state_dict().values(), strict=True)
    )


def test_float32_logits_give_a_float32_loss_with_float64_statistics():
    loss_fn = BaGMarLoss(5)
    loss = loss_fn(*batch())
    assert loss.dtype == torch.float32 and loss_fn.theta.dtype == F64


def test_bagmar_builds_from_settings():
    settings = dict(lambda1=1.2, lambda2=0.9, eps=1e-2, accumulation="ema", form="reference", ema_decay=0.5)
    loss_fn = build("bagmar", **settings)
    assert isinstance(loss_fn, BaGMarLoss) and loss_fn.theta.shape == (len(COUNTS),)
    assert {k: getattr(loss_fn, k) for k in settings} == settings


def test_bagmar_rejects_unknown_options():
    with pytest.raises(ValueError, match="accumulation"):
        BaGMarLoss(3, accumulation="mean")
    with pytest.raises(ValueError, match="form"):
        BaGMarLoss(3, form="authors")
