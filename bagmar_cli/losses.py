"""The loss registry: BaGMar and the long-tail baselines as nn.Modules, built from LossSettings.

Every loss takes `(logits, labels)` and returns a scalar, and has `set_epoch(epoch)`, which switches on
class-balanced re-weighting at `reweight_epoch` (deferred re-weighting, DRW). The logit-adjusting
losses (balanced_softmax, logit_adjusted, bagmar) adjust only in training; in eval mode they return
plain cross-entropy on the raw logits. The math lives in `bagmar_cli.functional.losses`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import cast

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from bagmar_cli.choices import did_you_mean
from bagmar_cli.console import warn
from bagmar_cli.errors import SettingError
from bagmar_cli.functional import losses as LF
from bagmar_cli.settings import LossSettings

LossBuilder = Callable[[LossSettings, Sequence[int], float], "ClassWeightedLoss"]
LOSSES: dict[str, LossBuilder] = {}
"""Loss builders by registry name; `@register_loss` adds to it."""
LOSS_PARAMETERS: dict[str, frozenset[str]] = {}
"""The `[loss]` settings each registered loss reads, besides the re-weighting ones every loss reads."""
REWEIGHT_PARAMETERS = frozenset({"name", "reweight", "cb_beta", "reweight_epoch", "label_smoothing"})


def register_loss(name: str, parameters: tuple[str, ...] = ()) -> Callable[[LossBuilder], LossBuilder]:
    """Decorator that registers `builder(settings, counts, head_scale) -> ClassWeightedLoss` under `name`.

    `parameters` names the LossSettings fields the builder reads (beyond the re-weighting ones), so that a
    setting the chosen loss would ignore is reported instead of silently dropped.
    """
    unknown = set(parameters) - set(LossSettings.model_fields)
    if unknown:
        raise ValueError(f"loss {name!r} names parameters LossSettings lacks: {sorted(unknown)}")

    def add(builder: LossBuilder) -> LossBuilder:
        LOSSES[name] = builder
        LOSS_PARAMETERS[name] = frozenset(parameters)
        return builder

    return add


def loss_names() -> list[str]:
    """The registered loss names, sorted."""
    return sorted(LOSSES)


def build_loss(settings: LossSettings, counts: Sequence[int], head_scale: float = 1.0) -> ClassWeightedLoss:
    """The loss `settings.name`, for per-class training counts in label order.

    head_scale is the factor the model's head already puts on its logits (a cosine head's scale), for
    losses defined on unscaled cosines (LDAM).
    """
    builder = LOSSES.get(settings.name)
    if builder is None:
        hint = did_you_mean(settings.name, loss_names(), cutoff=0.5)
        raise SettingError(f"unknown loss {settings.name!r}{hint}; choose from {', '.join(loss_names())}")
    for field in ignored_parameters(settings):
        warn(f"loss.{field} = {getattr(settings, field)!r} has no effect: loss {settings.name!r} does not use it")
    loss = builder(settings, counts, head_scale)
    loss.smoothing = settings.label_smoothing
    return loss


def ignored_parameters(settings: LossSettings) -> list[str]:
    """The `[loss]` fields set away from their defaults that the chosen loss does not read (in field order)."""
    used = REWEIGHT_PARAMETERS | LOSS_PARAMETERS.get(settings.name, frozenset())
    defaults = LossSettings()
    return [f for f in LossSettings.model_fields if f not in used and getattr(settings, f) != getattr(defaults, f)]


# -- modules -----------------------------------------------------------------------------------


class ClassWeightedLoss(nn.Module):
    """Base of the registered losses: optional per-class weights, in force from an epoch on (DRW); label smoothing
    (`smoothing`, in training only); and the mixed-pair loss of mixup and cutmix (`mixed`)."""

    class_weight: Tensor | None  # a buffer

    def __init__(self, weight: Tensor | None = None, weight_from_epoch: int = 0) -> None:
        super().__init__()
        # Derived from the counts, so rebuilt rather than checkpointed.
        self.register_buffer("class_weight", None if weight is None else weight.float(), persistent=False)
        self.weight_from_epoch = weight_from_epoch
        self.epoch = 0
        self.smoothing = 0.0  # loss.label_smoothing, set by build_loss

    def set_epoch(self, epoch: int) -> None:
        """Tell the loss the current (0-based) epoch."""
        self.epoch = epoch

    def weight_for(self, logits: Tensor) -> Tensor | None:
        """The per-class weights in force this epoch, in the logits' dtype, or None."""
        if self.class_weight is None or self.epoch < self.weight_from_epoch:
            return None
        return self.class_weight.to(logits.dtype)

    @property
    def label_smoothing(self) -> float:
        """The smoothing in force: `smoothing` in training, none in evaluation."""
        return self.smoothing if self.training else 0.0

    def mixed(self, logits: Tensor, labels: Tensor, partners: Tensor, lam: Tensor) -> Tensor:
        """The loss of images mixed from pairs (mixup, cutmix): lam * loss(labels) + (1 - lam) * loss(partners),
        `labels` the images' own and `partners` those of the images mixed in; for a loss linear in its target
        (cross-entropy) this is the loss on the mixed soft target."""
        own: Tensor = self(logits, labels)
        other: Tensor = self(logits, partners)
        return lam * own + (1 - lam) * other


class CrossEntropy(ClassWeightedLoss):
    """Softmax cross-entropy, optionally re-weighted."""

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        return F.cross_entropy(logits, labels, weight=self.weight_for(logits), label_smoothing=self.label_smoothing)


class FocalLoss(ClassWeightedLoss):
    """Focal loss (Lin et al. 2017)."""

    def __init__(self, gamma: float, weight: Tensor | None = None, weight_from_epoch: int = 0) -> None:
        super().__init__(weight, weight_from_epoch)
        self.gamma = gamma

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        return LF.focal_loss(logits, labels, self.gamma, self.weight_for(logits), self.label_smoothing)


class LDAMLoss(ClassWeightedLoss):
    """Label-distribution-aware margin loss (Cao et al. 2019), in training and evaluation alike.

    Cross-entropy on s (cos - m_y onehot(y)). A cosine head with scale h hands in h cos, so the loss
    works on logits / h: s (z / h - m_y) = (s / h) (z - h m_y), with the margins stored times h.
    """

    margins: Tensor  # a buffer

    def __init__(
        self,
        counts: Tensor,
        max_margin: float,
        scale: float,
        weight: Tensor | None = None,
        weight_from_epoch: int = 0,
        head_scale: float = 1.0,
    ) -> None:
        super().__init__(weight, weight_from_epoch)
        margins = LF.ldam_margins(counts, max_margin) * head_scale
        self.register_buffer("margins", margins.float(), persistent=False)
        self.scale = scale / head_scale

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        adjusted = LF.ldam_logits(logits, labels, self.margins, self.scale)
        return F.cross_entropy(adjusted, labels, weight=self.weight_for(logits), label_smoothing=self.label_smoothing)


class PriorAdjustedLoss(ClassWeightedLoss):
    """Cross-entropy on z_j + offset_j in training, plain cross-entropy on z in evaluation."""

    offset: Tensor  # a buffer

    def __init__(self, offset: Tensor, weight: Tensor | None = None, weight_from_epoch: int = 0) -> None:
        super().__init__(weight, weight_from_epoch)
        self.register_buffer("offset", offset.float(), persistent=False)

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        if not self.training:
            return F.cross_entropy(logits, labels)
        adjusted = logits + self.offset.to(logits.dtype)
        return F.cross_entropy(adjusted, labels, weight=self.weight_for(logits), label_smoothing=self.label_smoothing)


class BaGMarLoss(ClassWeightedLoss):
    """Balanced Gradient Margin loss: logits adjusted by the gradient mass each class has seen.

    Buffers `theta` (positive-gradient mass received by each classifier) and `phi` (negative-gradient
    mass produced by each class's samples) are float64 and saved in checkpoints. A training step adjusts
    with the statistics from before it, then adds its own. Under torch.distributed every rank must call
    the loss every step with the same local batch size; the step's statistics are all-reduced, so all
    ranks hold what one process fed the global batch would.
    """

    def __init__(
        self,
        num_classes: int,
        lambda1: float = 1.0,
        lambda2: float = 1.0,
        eps: float = 1e-3,
        accumulation: str = "reference",
        form: str = "paper",
        ema_decay: float = 0.99,
        weight: Tensor | None = None,
        weight_from_epoch: int = 0,
    ) -> None:
        super().__init__(weight, weight_from_epoch)
        if accumulation not in LF.ACCUMULATIONS:
            raise ValueError(f"unknown accumulation {accumulation!r}; choose from {', '.join(LF.ACCUMULATIONS)}")
        if form not in LF.BAGMAR_FORMS:
            raise ValueError(f"unknown BaGMar form {form!r}; choose from {', '.join(LF.BAGMAR_FORMS)}")
        self.lambda1, self.lambda2, self.eps = lambda1, lambda2, eps
        self.accumulation, self.form, self.ema_decay = accumulation, form, ema_decay
        for name in ("theta", "phi", "running_theta", "running_phi"):
            self.register_buffer(name, torch.zeros(num_classes, dtype=torch.float64))
        self._twins_key: tuple[tuple[int, int], ...] = ()
        self._twins_value = False
        self._observing = True  # off for the partner term of a mixed batch (see `mixed`)

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        if not self.training:
            return F.cross_entropy(logits, labels)
        statistics = self._statistics()
        theta, phi = statistics[:2]
        dtype = torch.promote_types(logits.dtype, torch.float32)  # log theta can exceed half range
        adjusted = logits + LF.bagmar_column(theta, self.lambda1, self.eps, dtype)
        if self.form == "paper" and not (self.lambda1 == self.lambda2 and self._twins(statistics)):
            target = LF.bagmar_target(theta, phi, self.lambda1, self.lambda2, self.eps, dtype)
            adjusted.scatter_add_(1, labels.unsqueeze(1), target[labels].unsqueeze(1))
        log_probs = adjusted.log_softmax(1)
        weight = self.weight_for(logits)
        if self.label_smoothing:  # log_softmax of log-probabilities is themselves: torch's smoothing on them
            loss = F.cross_entropy(log_probs, labels, weight=weight, label_smoothing=self.label_smoothing)
        else:
            loss = F.nll_loss(log_probs, labels, weight=weight)
        if self._observing:
            self._observe(log_probs, labels, statistics)
        return loss

    def mixed(self, logits: Tensor, labels: Tensor, partners: Tensor, lam: Tensor) -> Tensor:
        """As every loss, lam * loss(labels) + (1 - lam) * loss(partners), both adjusted with the statistics from
        before the step; the statistics then see each image once, under its own (original, hard) label."""
        self._observing = False
        try:
            other: Tensor = self(logits, partners)
        finally:
            self._observing = True
        own: Tensor = self(logits, labels)
        return lam * own + (1 - lam) * other

    def _statistics(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """theta, phi and their running totals (from `_buffers`: nn.Module's attribute lookup is slow)."""
        buffers = cast("dict[str, Tensor]", self._buffers)  # all four registered as tensors in __init__, never None
        return buffers["theta"], buffers["phi"], buffers["running_theta"], buffers["running_phi"]

    def _observe(self, log_probs: Tensor, labels: Tensor, statistics: tuple[Tensor, ...]) -> None:
        """Add this step's gradient mass (summed over ranks) to both statistics, in place."""
        world = _world_size()
        step = LF.bagmar_gradient_mass(log_probs, labels, labels.numel() * world)  # pos = neg, detached
        if world > 1:
            dist.all_reduce(step, op=dist.ReduceOp.SUM)
        before = _identity(statistics)
        theta, phi, running_theta, running_phi = statistics
        LF.accumulate_(theta, running_theta, step, self.accumulation, self.ema_decay)
        LF.accumulate_(phi, running_phi, step, self.accumulation, self.ema_decay)
        if before == self._twins_key:  # the same step on equal buffers keeps them equal
            self._twins_key = _identity(statistics)

    def _twins(self, statistics: tuple[Tensor, ...]) -> bool:
        """Whether theta = phi and the running totals agree, as every step keeps them (pos = neg).

        Then the paper form's target term is 0 when lambda1 = lambda2 and is skipped. Compared with
        torch.equal only when a buffer changed outside `_observe` (loaded, replaced, edited in place),
        which the tensors' identities and version counters tell without a device sync.
        """
        identity = _identity(statistics)
        if identity != self._twins_key:
            theta, phi, running_theta, running_phi = statistics
            self._twins_value = torch.equal(theta, phi) and torch.equal(running_theta, running_phi)
            self._twins_key = identity
        return self._twins_value


def _identity(tensors: tuple[Tensor, ...]) -> tuple[tuple[int, int], ...]:
    """Which tensors these are and how often each was changed in place."""
    return tuple((id(t), t._version) for t in tensors)


def _world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


# -- registry entries --------------------------------------------------------------------------


def _counts(counts: Sequence[int]) -> Tensor:
    if len(counts) == 0:
        raise ValueError("a loss needs the per-class training counts; got none")
    return torch.as_tensor(list(counts), dtype=torch.float64)


def _class_weight(settings: LossSettings, counts: Sequence[int]) -> Tensor | None:
    if settings.reweight == "none":
        return None
    return LF.class_balanced_weights(_counts(counts), settings.cb_beta)


@register_loss("ce")
def _ce(settings: LossSettings, counts: Sequence[int], head_scale: float) -> ClassWeightedLoss:
    return CrossEntropy(_class_weight(settings, counts), settings.reweight_epoch)


@register_loss("focal", ("focal_gamma",))
def _focal(settings: LossSettings, counts: Sequence[int], head_scale: float) -> ClassWeightedLoss:
    return FocalLoss(settings.focal_gamma, _class_weight(settings, counts), settings.reweight_epoch)


@register_loss("ldam", ("ldam_max_margin", "ldam_scale"))
def _ldam(settings: LossSettings, counts: Sequence[int], head_scale: float) -> ClassWeightedLoss:
    weight = _class_weight(settings, counts)
    return LDAMLoss(
        _counts(counts), settings.ldam_max_margin, settings.ldam_scale, weight, settings.reweight_epoch, head_scale
    )


@register_loss("balanced_softmax")
def _balanced_softmax(settings: LossSettings, counts: Sequence[int], head_scale: float) -> ClassWeightedLoss:
    log_counts = _counts(counts).clamp_min(1.0).log()
    return PriorAdjustedLoss(log_counts, _class_weight(settings, counts), settings.reweight_epoch)


@register_loss("logit_adjusted", ("la_tau",))
def _logit_adjusted(settings: LossSettings, counts: Sequence[int], head_scale: float) -> ClassWeightedLoss:
    offset = settings.la_tau * LF.log_prior(_counts(counts))
    return PriorAdjustedLoss(offset, _class_weight(settings, counts), settings.reweight_epoch)


@register_loss("bagmar", ("lambda1", "lambda2", "eps", "accumulation", "form", "ema_decay"))
def _bagmar(settings: LossSettings, counts: Sequence[int], head_scale: float) -> ClassWeightedLoss:
    return BaGMarLoss(
        len(_counts(counts)),
        lambda1=settings.lambda1,
        lambda2=settings.lambda2,
        eps=settings.eps,
        accumulation=settings.accumulation,
        form=settings.form,
        ema_decay=settings.ema_decay,
        weight=_class_weight(settings, counts),
        weight_from_epoch=settings.reweight_epoch,
    )
