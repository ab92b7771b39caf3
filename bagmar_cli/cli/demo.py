"""`bagmar demo`: prepare, train, evaluate on the embedded digits data; says where everything went."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bagmar_cli.cli import options
from bagmar_cli.cli.app import app
from bagmar_cli.cli.tables import report_table
from bagmar_cli.console import info, result, show


@app.command("demo")
def demo_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Where the demo writes data and runs.")] = Path("demo"),
    epochs: Annotated[int | None, typer.Option("--epochs", min=1, help="Override the preset's epochs.")] = None,
    device: options.Device = None,
) -> None:
    """Run the main job end to end on scikit-learn's digits, long-tailed (about a minute on 2 CPU cores)."""
    from bagmar_cli.engine.demo import run_demo

    demo = run_demo(out, epochs, device or "auto")
    show(report_table(demo.report, title="digits-LT test split, raw logits (best epoch chosen on val)"))
    posthoc = demo.tuned["posthoc"]
    show(report_table(demo.tuned, title=f"with PN, τ = {posthoc['tau']:g} tuned on val"))
    correct, total = demo.predicted
    info(f"bagmar predict (ONNX export) on {total} test images saved as PNG: {correct}/{total} correct")
    info(f"dataset:    {demo.data}")
    info(f"run:        {demo.run} (metrics.jsonl, config.toml)")
    info(f"checkpoint: {demo.checkpoint}")
    for name, path in demo.extras.items():
        info(f"{name + ':':<11} {path}")
    result(str(demo.run))
