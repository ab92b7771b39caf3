"""The export's parity check: the written file against the PyTorch serving module, on validation images."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from bagmar_cli.checkpoint import Checkpoint
from bagmar_cli.choices import Output
from bagmar_cli.console import info, warn
from bagmar_cli.data.splits import open_eval_split
from bagmar_cli.engine.evaluate.inference import first_images
from bagmar_cli.engine.evaluate.tta import TTAPlan, tta_input_size, tta_preprocess
from bagmar_cli.engine.restore import checkpoint_dataset, evaluation_split
from bagmar_cli.engine.serve.export.loaded import load_export
from bagmar_cli.engine.serve.export.serving import ServingModule
from bagmar_cli.errors import BagmarError, DatasetError

TOLERANCE = {Output.LOGITS: (1e-4, 1e-4), Output.PROBABILITIES: (1e-4, 0.0)}  # (atol, rtol), per output
CHECK_IMAGES = 64  # validation images the check compares on


def check_export(
    path: Path,
    sidecar: dict[str, Any],
    serving: ServingModule,
    ckpt: Checkpoint,
    data: Path | None,
    tta: TTAPlan | None = None,
) -> dict[str, Any]:
    """Compare the written export with the PyTorch serving module; BagmarError if they disagree."""
    images, source = check_inputs(ckpt, data, tta=tta)
    batch = sidecar["batch"] if isinstance(sidecar["batch"], int) else None
    exported = load_export(path, sidecar["format"], batch)(images)
    with torch.no_grad():
        reference = serving(images)
    return compare_outputs(exported, reference, serving.output, source)


def check_inputs(
    ckpt: Checkpoint, data: Path | None, n: int = CHECK_IMAGES, *, tta: TTAPlan | None = None
) -> tuple[Tensor, str]:
    """Up to n normalised images of the val split (else test), read as the test-time views `tta` take them;
    random inputs when the dataset is not there."""
    spec = ckpt.meta.model
    try:
        root, manifest = checkpoint_dataset(ckpt, data)
    except DatasetError as exc:
        if data is not None:
            raise
        warn(f"checking on random inputs, not real images: {exc}")
        return torch.randn(n, *tta_input_size(spec, tta), generator=torch.Generator().manual_seed(0)), "random"
    split = evaluation_split(manifest)
    preprocess = tta_preprocess(spec.preprocess, tta)
    return first_images(open_eval_split(root, split, preprocess, spec.mean, spec.std), n), split


def compare_outputs(exported: Tensor, reference: Tensor, output: Output | str, source: str) -> dict[str, Any]:
    """The check's record; BagmarError when any output is off by more than the tolerance or an argmax differs."""
    atol, rtol = TOLERANCE[Output(output)]
    diff = (exported.double() - reference.double()).abs()
    max_diff = float(diff.max()) if diff.numel() else 0.0
    within = bool((diff <= atol + rtol * reference.double().abs()).all())
    flips = int((exported.argmax(dim=1) != reference.argmax(dim=1)).sum())
    info(
        f"check: max |export - PyTorch| = {max_diff:.3g} over {len(reference)} {source} inputs "
        f"(tolerance {atol:g} + {rtol:g}·|PyTorch|), {flips} different predictions"
    )
    if not within or flips:
        raise BagmarError(
            f"the export disagrees with the PyTorch model (max abs diff {max_diff:.3g}, "
            f"{flips} different predictions); nothing was written"
        )
    return {"inputs": source, "n": len(reference), "max_abs_diff": max_diff, "atol": atol, "rtol": rtol}
