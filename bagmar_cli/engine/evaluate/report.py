"""What `bagmar eval` reports for one checkpoint (`Report`) and `tune-tau` for one search (`TuneReport`): strict
pydantic models, built once and read by attribute.

`Report.to_json()` is the object eval prints as JSON, key for key in field order; the two optional entries
(`saved_logits`, `plots`) appear only when the run was asked for them, as they always have.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, NonNegativeInt

from bagmar_cli.choices import PosthocMethod, SearchMetric

TTAMode = Literal["none", "flip", "five_crop", "five_crop_flip"]  # functional/tta.TTA_MODES

SUMMARY_KEYS = ("top1", "top5", "many", "medium", "few", "macro", "nll", "ece")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AppliedPosthoc(_Strict):
    """The post-hoc method a report's scores went through."""

    method: PosthocMethod
    tau: float
    source: Literal["recorded", "given"]  # recorded by tune-tau in the checkpoint, or given to the command


class PlotPaths(_Strict):
    """The three plots of one evaluation."""

    per_class: str
    confused_pairs: str
    reliability: str


class Report(_Strict):
    """One checkpoint on one split: accuracy (fractions), calibration, shifted priors, and what was evaluated."""

    top1: float
    top5: float
    many: float | None  # None: no evaluated class in the group
    medium: float | None
    few: float | None
    macro: float | None
    per_class: list[float | None]  # in label order; None: the class has no image in the split
    n: NonNegativeInt  # images evaluated
    nll: float
    ece: float
    shifted_priors: dict[str, float]  # top-1 under each shifted test prior (SADE's protocol)
    split: str
    checkpoint: str
    posthoc: AppliedPosthoc | None  # None: the raw logits
    tta: TTAMode = "none"  # the test-time views the logits were averaged over (`eval.tta`)
    selected_on_reported_split: bool  # the checkpoint's epoch was chosen on this split
    tuned_on_reported_split: bool  # the recorded τ was tuned on this split
    saved_logits: str | None = None  # present only when the logits were saved
    plots: PlotPaths | None = None  # present only when plots were asked for; None: they could not be written

    def scalars(self) -> dict[str, float | None]:
        """The scalar metrics by name (SUMMARY_KEYS), for tables that pick their columns by name."""
        return {key: getattr(self, key) for key in SUMMARY_KEYS}

    def to_json(self) -> dict[str, Any]:
        """The object eval prints as JSON (NaN stays a float here; the console writes it as null)."""
        return self.model_dump(exclude_unset=True)


class TauRow(_Strict):
    """One τ of a search, and the accuracy (fractions) of the scores at that τ."""

    tau: float
    top1: float | None
    many: float | None  # None: no evaluated class in the group
    medium: float | None
    few: float | None
    macro: float | None


class TuneReport(_Strict):
    """One τ search: every τ of the grid, the best, where it ran and what was written."""

    method: PosthocMethod
    split: str
    metric: SearchMetric  # the column that picked `best`
    grid: list[TauRow]
    best: TauRow  # the highest `metric`; ties go to the smallest τ
    tuned_on_test: bool
    checkpoint: str
    written: bool
    plot: str | None  # None without `write`, or when the plot could not be written

    def to_json(self) -> dict[str, Any]:
        """The object tune-tau prints as JSON."""
        return self.model_dump()


def summarise(reports: Sequence[Report | Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean and sample standard deviation of each scalar metric over several checkpoints (seeds)."""
    rows = [r.scalars() if isinstance(r, Report) else r for r in reports]
    summary: dict[str, dict[str, float]] = {}
    for key in SUMMARY_KEYS:
        values = [float(value) for row in rows if (value := row.get(key)) is not None]
        if values:
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            summary[key] = {"mean": statistics.fmean(values), "std": std}
    return summary
