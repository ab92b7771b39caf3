"""`bagmar predict MODEL IMAGES...`: the top classes of image files, one line (or JSON object) per image."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from bagmar_cli.cli import options
from bagmar_cli.cli.app import app
from bagmar_cli.console import result, result_json, warn
from bagmar_cli.errors import BagmarError


@app.command("predict")
def predict_command(
    model: Annotated[Path, typer.Argument(help="Checkpoint, bundle, or .onnx / TorchScript export (with its .json).")],
    images: Annotated[list[Path], typer.Argument(help="Image files or folders (searched recursively).")],
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, help="Classes to list per image.")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per image on stdout.")] = False,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Images per batch.")] = 256,
    device: options.Device = None,
    tta: options.Tta = None,
) -> None:
    """Classify images; unreadable files get an error line and make the exit code 1 once all are done."""
    from bagmar_cli.engine.serve.predictor import format_entry, predict_images

    failed = 0
    for entry in predict_images(model, images, k=top_k, batch_size=batch_size, device=device or "auto", tta=tta):
        result_json(entry) if as_json else result(format_entry(entry))
        if "error" in entry:
            failed += 1
            warn(escape(f"{entry['path']}: {entry['error']}"))
    if failed:
        raise BagmarError(f"{failed} image(s) could not be read (see their error entries)")
