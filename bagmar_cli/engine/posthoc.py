"""Which post-hoc method a command applies (recorded by tune-tau, or given), and its scores on cached outputs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from bagmar_cli.checkpoint import Checkpoint
from bagmar_cli.errors import CheckpointError, UsageError
from bagmar_cli.functional.posthoc import POSTHOC_METHODS, apply_posthoc, pn_column_sums


@dataclass(frozen=True)
class Posthoc:
    """A post-hoc method at a fixed τ; PN also carries its normalisation vector c (or None: use the split's)."""

    method: str
    tau: float
    c: torch.Tensor | None = None
    source: str = "given"  # "recorded" (by tune-tau) or "given" (on the command line)

    def describe(self) -> dict[str, Any]:
        """The JSON form reports carry."""
        return {"method": self.method, "tau": self.tau, "source": self.source}


def resolve_posthoc(ckpt: Checkpoint, tau: str, method: str | None) -> Posthoc | None:
    """`--tau auto|none|FLOAT` (+ `--method`) -> the method to apply, or None for the raw logits."""
    if method is not None and method not in POSTHOC_METHODS:
        raise UsageError(f"unknown post-hoc method {method!r}; choose from {', '.join(POSTHOC_METHODS)}")
    if tau == "none":
        return None
    if tau == "auto":
        recorded = ckpt.meta.get("posthoc")
        if not recorded:
            return None
        return _recorded(ckpt, recorded)
    try:
        value = float(tau)
    except ValueError:
        raise UsageError(f"--tau {tau!r}: expected auto, none or a number") from None
    if not value == value or value in (float("inf"), float("-inf")):
        raise UsageError(f"--tau {tau!r}: expected a finite number")
    return Posthoc(method or "pn", value)


def _recorded(ckpt: Checkpoint, recorded: Any) -> Posthoc:
    """The method tune-tau wrote into the metadata; c kept in float64."""
    try:
        c = recorded.get("c")
        c = None if c is None else torch.tensor(c, dtype=torch.float64)
        return Posthoc(str(recorded["method"]), float(recorded["tau"]), c, "recorded")
    except (AttributeError, KeyError, TypeError, ValueError):
        raise CheckpointError(f"{ckpt.path}: malformed posthoc record {recorded!r}") from None


def head_parameters(ckpt: Checkpoint) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The classifier's weight and bias (τ-norm rescales the weight rows)."""
    model = ckpt.section("model")
    if ckpt.meta["model"].get("head") != "linear":
        raise UsageError("tau-norm needs a linear classifier head; this checkpoint's head is cosine-normalised")
    return model["head.weight"].float(), model.get("head.bias")


def posthoc_scores(
    posthoc: Posthoc | None, ckpt: Checkpoint, logits: torch.Tensor, features: torch.Tensor | None
) -> torch.Tensor:
    """Scores whose argmax is the prediction; PN without a recorded c uses the evaluated split's column sums."""
    if posthoc is None:
        return logits
    weight, bias = head_parameters(ckpt) if posthoc.method == "tau-norm" else (None, None)
    c = posthoc.c if posthoc.c is not None else (pn_column_sums(logits) if posthoc.method == "pn" else None)
    counts = torch.tensor(ckpt.meta["train_counts"], dtype=torch.float64)
    return apply_posthoc(
        posthoc.method, posthoc.tau, logits=logits, counts=counts, c=c, features=features, weight=weight, bias=bias
    )
