"""The JSON sidecar `<export>.json` of an export: a strict schema, written by export and checked when it is read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, model_validator

from bagmar_cli import __version__
from bagmar_cli.checkpoint import Checkpoint
from bagmar_cli.checkpoint_meta import Finite, PositiveFinite, PosthocRecord, first_error
from bagmar_cli.choices import ExportFormat, Output
from bagmar_cli.data.images import EvalPreprocess
from bagmar_cli.engine.evaluate.posthoc import Posthoc
from bagmar_cli.engine.evaluate.report import TTAMode
from bagmar_cli.engine.evaluate.tta import TTAPlan, tta_input_size, tta_preprocess
from bagmar_cli.engine.serve.export.formats import INPUT_NAME, format_of
from bagmar_cli.engine.serve.export.serving import posthoc_record
from bagmar_cli.errors import BagmarError, SettingError

if TYPE_CHECKING:
    from bagmar_cli.engine.serve.export.options import ExportOptions

MAX_SIDECAR_BYTES = 16 << 20  # a sidecar is a few KB (class names included); refuse anything absurd
CHANNELS = {1: "L", 3: "RGB"}  # Pillow mode of the input images, by channel count


class Resize(BaseModel):
    """How images are resized before normalisation."""

    model_config = ConfigDict(extra="forbid")
    height: PositiveInt
    width: PositiveInt
    filter: Literal["bilinear"]


class Sidecar(BaseModel):
    """Everything needed to serve an export with only its runtime and Pillow (see docs/export.md)."""

    model_config = ConfigDict(extra="forbid")
    format: ExportFormat
    file: str  # the export's file name
    bagmar_version: str
    torch_version: str
    opset: PositiveInt | None  # ONNX opset; None for other formats
    source_checkpoint: str
    source_checkpoint_sha256: str
    input: str  # name of the input tensor
    output: Output  # what the model returns, and the name of that output
    batch: Literal["dynamic"] | PositiveInt  # a fixed batch size, or any
    classes: list[str]  # class names in output order
    input_size: Annotated[list[PositiveInt], Field(min_length=3, max_length=3)]  # [C, H, W]
    channels: Literal["L", "RGB"] | None  # Pillow mode of the input images
    resize: Resize  # without preprocess: stretch to height x width, then normalise
    mean: list[Finite]  # per channel, for pixels scaled to [0, 1]
    std: list[PositiveFinite]
    preprocess: EvalPreprocess | None = None  # models trained on image files: resize, center crop, normalise
    posthoc: PosthocRecord | None  # the baked-in post-hoc method
    tta: TTAMode = "none"  # the test-time views baked in (the input is then what they are taken from)
    sha256: str | None = None  # of the export file (absent only while it is being written)
    check: dict[str, Any] | None = None  # the --check record, or None with --no-check

    @model_validator(mode="after")
    def _consistent(self) -> Sidecar:
        channels = self.input_size[0]
        if len(self.mean) != channels or len(self.std) != channels:
            raise ValueError(f"mean and std need {channels} values, one per input channel")
        if not self.classes:
            raise ValueError("classes is empty")
        if self.posthoc is not None and self.posthoc.c is not None and len(self.posthoc.c) != len(self.classes):
            raise ValueError(f"posthoc.c has {len(self.posthoc.c)} values for {len(self.classes)} classes")
        return self

    @property
    def fixed_batch(self) -> int | None:
        """The batch size a fixed-batch export needs, or None."""
        return self.batch if isinstance(self.batch, int) else None


def sidecar_of(path: Path) -> Path:
    """The JSON sidecar of an export: model.onnx -> model.onnx.json."""
    return path.with_name(path.name + ".json")


def read_sidecar(path: Path) -> Sidecar:
    """The validated sidecar of the export at `path`; one clear error naming the file and field otherwise."""
    sidecar = sidecar_of(path)
    try:
        if sidecar.stat().st_size > MAX_SIDECAR_BYTES:
            raise BagmarError(f"{sidecar} is not a bagmar export sidecar (larger than {MAX_SIDECAR_BYTES} bytes)")
        raw = json.loads(sidecar.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SettingError(
            f"{path} has no sidecar {sidecar.name}; predict needs it (bagmar export writes it)"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BagmarError(f"cannot read {sidecar}: {exc}") from None
    try:
        parsed = Sidecar.model_validate(raw)
    except ValidationError as exc:
        raise BagmarError(f"{sidecar} is not a valid bagmar export sidecar: {first_error(exc)}") from None
    if parsed.format == ExportFormat.SAFETENSORS:
        raise BagmarError(f"{sidecar}: a bundle is read directly (pass the .safetensors file), not through its sidecar")
    return parsed


def make_sidecar(
    ckpt: Checkpoint, opts: ExportOptions, output: str, posthoc: Posthoc | None, tta: str, plan: TTAPlan | None
) -> dict[str, Any]:
    """Everything needed to serve the export with only its runtime and Pillow (see docs/export.md); under test-time
    views `plan`, the input size and preprocessing are those the views are taken from (`tta_preprocess`)."""
    spec = ckpt.meta.model
    channels, height, width = tta_input_size(spec, plan)
    preprocess = tta_preprocess(spec.preprocess, plan)
    fmt = format_of(opts.format)
    return {
        "format": str(opts.format),
        "file": opts.out_path.name,
        "bagmar_version": __version__,
        "torch_version": torch.__version__,
        "opset": fmt.opset,
        "source_checkpoint": str(Path(opts.checkpoint).resolve()),
        "source_checkpoint_sha256": ckpt.sha256,
        "input": INPUT_NAME,
        "output": str(output),
        "batch": opts.batch if opts.batch is not None and fmt.fixed_batch else "dynamic",
        "classes": list(ckpt.meta.classes),
        "input_size": [channels, height, width],
        "channels": CHANNELS.get(channels),
        "resize": {"height": height, "width": width, "filter": "bilinear"},
        "mean": list(spec.mean),
        "std": list(spec.std),
        "preprocess": None if preprocess is None else preprocess.model_dump(mode="json"),
        "posthoc": posthoc_record(posthoc),
        "tta": tta,
    }
