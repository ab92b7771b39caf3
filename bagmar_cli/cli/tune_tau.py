"""`bagmar tune-tau CKPT`: choose τ of a post-hoc method on a held-out split and record it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from bagmar_cli.choices import PosthocMethod, SearchMetric
from bagmar_cli.cli import options
from bagmar_cli.cli.app import app
from bagmar_cli.cli.tables import pct
from bagmar_cli.console import info, result_json, show, warn

if TYPE_CHECKING:
    from bagmar_cli.engine.evaluate.report import TuneReport


@app.command("tune-tau")
def tune_tau_command(
    checkpoint: Annotated[Path, typer.Argument(help="A bagmar .safetensors checkpoint.")],
    method: Annotated[
        PosthocMethod, options.choice(PosthocMethod, "--method", help="pn, tau-norm or logit-adjust.")
    ] = PosthocMethod.PN,
    split: Annotated[str | None, typer.Option("--split", help="Tuning split (default: val, else test).")] = None,
    grid: Annotated[str, typer.Option("--grid", help="START:STOP:STEP, STOP included; τ in [0, 10].")] = "0:2:0.1",
    metric: Annotated[
        SearchMetric, options.choice(SearchMetric, "--metric", help="top1, macro, many, medium or few.")
    ] = SearchMetric.TOP1,
    write: Annotated[
        bool, typer.Option("--write/--no-write", help="Record the best τ in the checkpoint and plot tau-METHOD.png.")
    ] = True,
    data: options.Data = None,
    as_json: options.Json = False,
    device: options.Device = None,
) -> None:
    """Score every τ of the grid from one pass of the model; print the table and the best τ."""
    from bagmar_cli.engine.evaluate.tuning import WriteProtected, tune_tau

    try:
        tuned = tune_tau(
            checkpoint,
            method=method,
            split=split,
            grid=grid,
            metric=metric,
            write=write,
            data=data,
            device=device or "auto",
        )
    except WriteProtected as exc:
        raise WriteProtected(f"{exc} or pass --no-write") from None
    show(_table(tuned.report()))
    best = tuned.search.best
    plot = f"; plot: {tuned.plot}" if tuned.plot else ""
    info(f"best τ = {best['tau']:g} ({metric} {pct(best[metric])}% on {tuned.split}){plot}")
    if tuned.split == "test":
        warn("τ was tuned on the test split: accuracy reported on test with this τ is optimistic")
    if write:
        info(f"recorded {method} τ = {best['tau']:g} in {checkpoint}")
    if as_json:
        result_json(tuned.to_json())


def _table(report: TuneReport) -> Table:
    table = Table(title=f"{report.method} on {report.split}", title_justify="left")
    for column in ("τ", "top-1", "many", "medium", "few", "macro"):
        table.add_column(column, justify="right")
    for row in report.grid:
        mark = " *" if row.tau == report.best.tau else ""
        table.add_row(
            f"{row.tau:g}{mark}", *(pct(value) for value in (row.top1, row.many, row.medium, row.few, row.macro))
        )
    return table
