"""Rich tables for reports (rendered on stderr; stdout is for results)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.table import Table

if TYPE_CHECKING:
    from bagmar_cli.engine.evaluate.report import Report

GROUPS = ("top1", "top5", "many", "medium", "few", "macro")
HEADERS = {"top1": "top-1", "top5": "top-5", "many": "many", "medium": "medium", "few": "few", "macro": "macro"}


def pct(value: float | None) -> str:
    """A fraction as a percentage with one decimal; '-' where a group has no classes."""
    return "-" if value is None else f"{100 * value:.1f}"


def report_table(report: Report, title: str) -> Table:
    """One row: the accuracy columns of an evaluation report in percent, then calibration (NLL, ECE)."""
    table = Table(title=title, title_justify="left")
    for key in GROUPS:
        table.add_column(HEADERS[key], justify="right")
    for key in ("nll", "ece"):
        table.add_column(key.upper(), justify="right")
    table.add_column("n", justify="right")
    scalars = report.scalars()
    cells = [pct(scalars[key]) for key in GROUPS] + [f"{report.nll:.3f}", f"{report.ece:.3f}"]
    table.add_row(*cells, str(report.n))
    return table


def priors_table(priors: dict[str, float]) -> Table:
    """Accuracy under each shifted test prior (SADE's test-agnostic protocol), one row each."""
    table = Table(title="shifted test priors", title_justify="left")
    table.add_column("test prior")
    table.add_column("top-1", justify="right")
    for name, value in priors.items():
        table.add_row(name, pct(value))
    return table


def summary_table(summary: dict[str, dict[str, float]], count: int) -> Table:
    """Mean ± sample standard deviation of each metric over checkpoints, one row each."""
    table = Table(title=f"mean ± std over {count} checkpoints", title_justify="left")
    for column in ("metric", "mean", "std"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for key, stats in summary.items():
        as_pct = key not in ("nll", "ece")
        cells = [pct(stats["mean"]), pct(stats["std"])] if as_pct else [f"{stats['mean']:.3f}", f"{stats['std']:.3f}"]
        table.add_row(HEADERS.get(key, key.upper()), *cells)
    return table
