"""Which post-hoc method a command applies (recorded by tune-tau, or given), and its scores on cached outputs."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from bagmar_cli.checkpoint import Checkpoint
from bagmar_cli.checkpoint_meta import TAU_MAX, PosthocRecord
from bagmar_cli.choices import PosthocMethod
from bagmar_cli.engine.evaluate.report import AppliedPosthoc
from bagmar_cli.errors import SettingError
from bagmar_cli.functional.posthoc import apply_posthoc, pn_column_sums


@dataclass(frozen=True)
class Posthoc:
    """A post-hoc method at a fixed τ; PN also carries its normalisation vector c (or None: use the split's)."""

    method: PosthocMethod
    tau: float
    c: torch.Tensor | None = None
    source: Literal["recorded", "given"] = "given"  # recorded by tune-tau, or given to the command

    def describe(self) -> AppliedPosthoc:
        """What reports say of it."""
        return AppliedPosthoc(method=self.method, tau=self.tau, source=self.source)


def resolve_posthoc(ckpt: Checkpoint, tau: str, method: PosthocMethod | str | None) -> Posthoc | None:
    """`tau` (auto, none or a number; with a number, `method`) -> the method to apply, or None for the raw logits.

    The one place that decides what a checkpoint serves: eval, export and predict all ask here.
    """
    method = PosthocMethod.parse_optional(method)
    if method is not None and tau in ("auto", "none"):
        raise SettingError(f"`method` goes with `tau` NUMBER (`tau` {tau} does not take a method)")
    if tau == "none":
        return None
    if tau == "auto":
        return None if ckpt.meta.posthoc is None else recorded_posthoc(ckpt.meta.posthoc)
    return Posthoc(method or PosthocMethod.PN, parse_tau(tau))


def parse_tau(text: str) -> float:
    """A τ given on the command line: a finite number in [0, TAU_MAX]."""
    try:
        value = float(text)
    except ValueError:
        raise SettingError(f"`tau` {text!r}: expected auto, none or a number") from None
    if not math.isfinite(value):
        raise SettingError(f"`tau` {text!r}: expected a finite number")
    if not 0.0 <= value <= TAU_MAX:
        raise SettingError(f"`tau` {text!r}: expected a number from 0 to {TAU_MAX:g}")
    return value


def recorded_posthoc(record: PosthocRecord) -> Posthoc:
    """The method tune-tau (or export) recorded; c kept in float64."""
    c = None if record.c is None else torch.tensor(record.c, dtype=torch.float64)
    return Posthoc(PosthocMethod(record.method), record.tau, c, "recorded")


def require_linear_head(ckpt: Checkpoint) -> None:
    """SettingError unless the checkpoint's head is linear: τ-norm rescales a linear head's weight rows."""
    if ckpt.meta.model.head != "linear":
        raise SettingError("tau-norm needs a linear classifier head; this checkpoint's head is cosine-normalised")


def head_parameters(ckpt: Checkpoint) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The classifier's weight and bias (τ-norm rescales the weight rows)."""
    require_linear_head(ckpt)
    model = ckpt.section("model")
    return model["head.weight"].float(), model.get("head.bias")


def posthoc_scores(
    posthoc: Posthoc | None, ckpt: Checkpoint, logits: torch.Tensor, features: torch.Tensor | None
) -> torch.Tensor:
    """Scores whose argmax is the prediction; PN without a recorded c uses the evaluated split's column sums."""
    if posthoc is None:
        return logits
    weight, bias = head_parameters(ckpt) if posthoc.method == "tau-norm" else (None, None)
    c = posthoc.c if posthoc.c is not None else (pn_column_sums(logits) if posthoc.method == "pn" else None)
    counts = torch.tensor(ckpt.meta.train_counts, dtype=torch.float64)
    return apply_posthoc(
        posthoc.method, posthoc.tau, logits=logits, counts=counts, c=c, features=features, weight=weight, bias=bias
    )
