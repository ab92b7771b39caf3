"""Grid search of a post-hoc method's tau on cached logits (or features), scored per shot group."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

import torch
from torch import Tensor

from bagmar_cli.checkpoint_meta import TAU_MAX
from bagmar_cli.choices import PosthocMethod, SearchMetric
from bagmar_cli.errors import SettingError
from bagmar_cli.functional.metrics import accuracy_summary, predict
from bagmar_cli.functional.posthoc import (
    apply_posthoc,
    pn_column_sums,
    pn_rescale,
    tau_norm_rescale,
)

MAX_GRID_POINTS = 10_000  # a guard against "0:1:1e-9" filling memory


@dataclass(frozen=True)
class TauSearchResult:
    """The accuracy of every tau tried, and the best one."""

    method: PosthocMethod
    metric: SearchMetric  # the column that picked `best`
    rows: list[dict[str, float | None]]  # per tau, in grid order: tau, top1, many, medium, few, macro
    best: dict[str, float | None]  # the row with the highest metric; ties go to the smallest tau
    c: Tensor | None = None  # PN column sums used; store them to apply PN to single images later


def _grid_number(text: str, spec: str) -> Decimal:
    """One finite number of a grid spec, parsed exactly so 0.1 steps add up to round values."""
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise SettingError(f"tau grid {spec!r}: {text.strip()!r} is not a number") from None
    if not value.is_finite() or not math.isfinite(float(value)):
        raise SettingError(f"tau grid {spec!r}: {text.strip()!r} is not a finite number")
    return value


def parse_grid(spec: str) -> list[float]:
    """Parse "START:STOP:STEP" (STOP included when on the grid) or a single value into taus in [0, TAU_MAX]."""
    parts = spec.split(":")
    if len(parts) not in (1, 3):
        raise SettingError(f"tau grid {spec!r}: expected START:STOP:STEP (e.g. 0:2:0.1) or one value")
    numbers = [_grid_number(part, spec) for part in parts]
    start, stop, step = numbers if len(numbers) == 3 else (numbers[0], numbers[0], Decimal(1))
    if step <= 0:
        raise SettingError(f"tau grid {spec!r}: STEP must be positive")
    if start > stop:
        raise SettingError(f"tau grid {spec!r}: START is greater than STOP")
    if start < 0 or stop > Decimal(str(TAU_MAX)):
        raise SettingError(f"tau grid {spec!r}: τ must lie in [0, {TAU_MAX:g}]")
    count = int((stop - start) / step) + 1
    if count > MAX_GRID_POINTS:
        raise SettingError(f"tau grid {spec!r}: {count} values, more than {MAX_GRID_POINTS}")
    return [float(start + i * step) for i in range(count)]


def _scorer(
    method: PosthocMethod,
    *,
    logits: Tensor,
    counts: Tensor,
    c: Tensor | None,
    features: Tensor | None,
    weight: Tensor | None,
    bias: Tensor | None,
) -> tuple[Callable[[float], Tensor], Tensor | None]:
    """A function tau -> scores, with everything that does not depend on tau computed once."""
    if method == "pn":
        column_sums = pn_column_sums(logits) if c is None else c
        probs = torch.softmax(logits, dim=1)
        return (lambda tau: pn_rescale(probs, column_sums, tau)), column_sums
    if method == "tau-norm":
        if features is None or weight is None:
            raise ValueError("post-hoc method 'tau-norm' needs features, weight")
        raw = features @ weight.T.to(features.dtype)  # one matmul; each tau only rescales columns
        return (lambda tau: tau_norm_rescale(raw, weight, bias, tau)), None
    inputs = {"counts": counts, "c": c, "features": features, "weight": weight, "bias": bias}
    return (lambda tau: apply_posthoc(method, tau, logits=logits, **inputs)), None


def _best_row(rows: list[dict[str, float | None]], metric: SearchMetric) -> dict[str, float | None]:
    """The row with the highest metric, the smallest tau among ties."""
    if rows[0][metric] is None:
        raise SettingError(f"metric {metric!r} is undefined here: no evaluated class falls in that group")

    def rank(row: dict[str, float | None]) -> tuple[float, float]:
        score, tau = row[metric], row["tau"]
        assert score is not None and tau is not None  # a metric is defined in every row or none; tau always is
        return score, -tau

    return max(rows, key=rank)


def search_tau(
    method: PosthocMethod | str,
    taus: Sequence[float],
    *,
    logits: Tensor,
    labels: Tensor,
    counts: Tensor,
    features: Tensor | None = None,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    c: Tensor | None = None,
    metric: SearchMetric | str = SearchMetric.TOP1,
) -> TauSearchResult:
    """Score every tau of a post-hoc method on one evaluation set and pick the best by `metric`."""
    method, metric = PosthocMethod.parse(method), SearchMetric.parse(metric)
    if not taus:
        raise SettingError("the tau grid is empty")
    with torch.no_grad():
        scores_at, c_used = _scorer(
            method, logits=logits, counts=counts, c=c, features=features, weight=weight, bias=bias
        )
        predictions = ((float(tau), predict(scores_at(tau))) for tau in taus)
        rows = [{"tau": tau, **accuracy_summary(preds, labels, counts)} for tau, preds in predictions]
    return TauSearchResult(method, metric, rows, _best_row(rows, metric), c_used)
