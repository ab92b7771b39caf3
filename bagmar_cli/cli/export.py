"""`bagmar export CKPT`: the model with its post-hoc method, as ONNX, TorchScript or a bundle; prints its path."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bagmar_cli.choices import ExportFormat, Output, PosthocMethod
from bagmar_cli.cli import options
from bagmar_cli.cli.app import app
from bagmar_cli.console import result


@app.command("export")
def export_command(
    checkpoint: Annotated[Path, typer.Argument(help="A bagmar .safetensors checkpoint (or bundle).")],
    fmt: Annotated[
        ExportFormat, options.choice(ExportFormat, "--format", "-f", help="onnx, torchscript or safetensors (bundle).")
    ] = ExportFormat.ONNX,
    tau: Annotated[str, typer.Option("--tau", help="auto (what tune-tau recorded), none, or a number.")] = "auto",
    method: Annotated[
        PosthocMethod | None,
        options.choice(PosthocMethod, "--method", help="With --tau NUMBER: pn, tau-norm, logit-adjust."),
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output file (default: beside CKPT).")] = None,
    batch: Annotated[str, typer.Option("--batch", help="dynamic, or a fixed batch size N.")] = "dynamic",
    check: Annotated[bool, typer.Option("--check/--no-check", help="Compare with PyTorch on val images.")] = True,
    output: Annotated[
        Output | None, options.choice(Output, "--output", help="logits or probabilities (PN: probabilities).")
    ] = None,
    data: options.Data = None,
    weights: options.Weights = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output file.")] = False,
    tta: options.Tta = None,
) -> None:
    """Export a checkpoint for serving, with a JSON sidecar `<out>.json`; prints the export's path."""
    from bagmar_cli.engine.serve.export import ExportOptions, export_model

    opts = ExportOptions(
        checkpoint=checkpoint,
        format=fmt,
        tau=tau,
        method=method,
        out=out,
        batch=batch,
        check=check,
        output=output,
        data=data,
        overwrite=overwrite,
        weights=weights,
        tta=tta,
    )
    result(str(export_model(opts)))
