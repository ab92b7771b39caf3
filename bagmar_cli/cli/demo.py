"""`bagmar demo`: cross-entropy vs BaGMar on the embedded digits, with and without PN; says where everything went."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from bagmar_cli.cli import options
from bagmar_cli.cli.app import app
from bagmar_cli.cli.tables import pct
from bagmar_cli.console import info, result, show

if TYPE_CHECKING:
    from bagmar_cli.engine.demo import Comparison

COLUMNS = ("many", "medium", "few", "macro")


@app.command("demo")
def demo_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Where the demo writes data and runs.")] = Path("demo"),
    epochs: Annotated[int | None, typer.Option("--epochs", min=1, help="Override the presets' epochs.")] = None,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Seed of the data draw and of both trainings.")] = 0,
    device: options.Device = None,
) -> None:
    """Cross-entropy vs BaGMar, with and without PN, on long-tailed digits (under a minute on 2 CPU cores)."""
    from bagmar_cli.engine.demo import run_demo

    demo = run_demo(out, epochs, device or "auto", seed)
    comparison = demo.comparison
    show(comparison_table(comparison))
    show(f"[bold]{comparison.claim()}[/bold]")
    for line in comparison.intervals():
        show(line)
    correct, total = demo.predicted
    info(f"bagmar predict (BaGMar's ONNX export) on {total} test images saved as PNG: {correct}/{total} correct")
    info(f"{'dataset:':<14} {comparison.data}")
    for arm in (comparison.ce, comparison.bagmar):
        info(f"{arm.name + ':':<14} {arm.run} (best.safetensors, metrics.jsonl, config.toml, τ plot {arm.plot.name})")
    for name, path in demo.extras.items():
        info(f"{name + ':':<14} {path}")
    result(str(comparison.bagmar.run))


def comparison_table(comparison: Comparison) -> Table:
    """The four variants side by side on the test split: many / medium / few / macro accuracy in percent."""
    table = Table(
        title=f"digits-LT test split, seed {comparison.seed} (best epoch and PN's τ chosen on val)",
        title_justify="left",
    )
    table.add_column("")
    for column in COLUMNS:
        table.add_column(column, justify="right")
    for arm in (comparison.ce, comparison.bagmar):
        table.add_row(arm.name, *(pct(arm.raw.scalars()[key]) for key in COLUMNS))
        table.add_row(f"{arm.name} + PN (τ = {arm.tau:g})", *(pct(arm.tuned.scalars()[key]) for key in COLUMNS))
    return table
