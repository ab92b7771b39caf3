"""`tune-tau`: one pass of the model over a split, then every τ of a grid scored from that cache."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bagmar_cli.checkpoint import load_checkpoint, update_metadata
from bagmar_cli.console import warn
from bagmar_cli.engine.evaluate.evaluator import split_outputs
from bagmar_cli.engine.evaluate.posthoc import head_parameters
from bagmar_cli.engine.evaluate.report import TuneReport
from bagmar_cli.engine.evaluate.tau_search import TauSearchResult, parse_grid, search_tau
from bagmar_cli.engine.restore import checkpoint_dataset, evaluation_split
from bagmar_cli.engine.tensorboard import log_tau_curve
from bagmar_cli.errors import BagmarError, WriteError
from bagmar_cli.files import check_writable
from bagmar_cli.plots import plot_tau_curve


@dataclass
class TuneResult:
    """The search, where it ran, and what was written."""

    search: TauSearchResult
    split: str
    checkpoint: Path
    plot: Path | None  # None without `write`, or when the plot could not be written
    written: bool

    def report(self) -> TuneReport:
        """What tune-tau shows, and prints as JSON."""
        return TuneReport.model_validate(
            {
                "method": self.search.method,
                "split": self.split,
                "metric": self.search.metric,
                "grid": self.search.rows,
                "best": self.search.best,
                "tuned_on_test": self.split == "test",
                "checkpoint": str(self.checkpoint),
                "written": self.written,
                "plot": None if self.plot is None else str(self.plot),
            }
        )

    def to_json(self) -> dict[str, Any]:
        """The object tune-tau prints as JSON."""
        return self.report().to_json()


def tune_tau(
    checkpoint: Path,
    *,
    method: str = "pn",
    split: str | None = None,
    grid: str = "0:2:0.1",
    metric: str = "top1",
    write: bool = True,
    data: Path | None = None,
    device: str = "auto",
) -> TuneResult:
    """Search τ for `method` on `split` (default: val when the dataset has one, else test).

    With `write`, the best τ is recorded in the checkpoint and the τ curve plotted beside it; without, no file
    is written (nor replaced).
    """
    taus = parse_grid(grid)
    ckpt = load_checkpoint(checkpoint, tensors=False)
    if write:
        _check_writable(Path(checkpoint))
    _, manifest = checkpoint_dataset(ckpt, data)
    split = split or evaluation_split(manifest)
    outputs = split_outputs(checkpoint, data=data, split=split, device=device, features=method == "tau-norm")
    weight, bias = head_parameters(outputs.ckpt) if method == "tau-norm" else (None, None)
    search = search_tau(
        method,
        taus,
        logits=outputs.logits,
        labels=outputs.labels,
        counts=torch.tensor(outputs.counts),
        features=outputs.features,
        weight=weight,
        bias=bias,
        metric=metric,
    )
    plot = None
    if write:
        update_metadata(checkpoint, {"posthoc": _record(search, split)})
        plot = _plot(search, Path(checkpoint).parent / f"tau-{method}.png")
        _log_curve(search, Path(checkpoint))
    return TuneResult(search, split, Path(checkpoint), plot, write)


class WriteProtected(BagmarError):
    """The checkpoint cannot take the record; cli/ says how to tune without writing."""


def _check_writable(checkpoint: Path) -> None:
    """Refuse before the search when the record could not be written: a write-protected checkpoint stays as it is."""
    try:
        check_writable(checkpoint)
    except WriteError:
        raise WriteProtected(f"{checkpoint} is write-protected; make it writable") from None


def _plot(search: TauSearchResult, path: Path) -> Path | None:
    """The τ curve; a plot that cannot be written is a warning (the record is already in the checkpoint)."""
    try:
        return plot_tau_curve(search, path)
    except WriteError as exc:
        warn(f"no plot: {exc}")
        return None


def _log_curve(search: TauSearchResult, checkpoint: Path) -> None:
    """The τ curve into the TensorBoard files beside the checkpoint (tensorboard installed); a warning on failure."""
    try:
        log_tau_curve(checkpoint.parent, checkpoint, str(search.method), search.rows)
    except OSError as exc:
        warn(f"no TensorBoard τ curve: {exc}")


def _record(search: TauSearchResult, split: str) -> dict[str, Any]:
    c = None if search.c is None else [float(v) for v in search.c]
    return {"method": search.method, "tau": search.best["tau"], "c": c, "split": split, "metric": search.metric}
