"""The JSON sidecar `<export>.json` of an ONNX or TorchScript export: a strict schema, checked when it is read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, model_validator

from bagmar_cli.checkpoint_meta import Finite, PositiveFinite, PosthocRecord, first_error
from bagmar_cli.data.images import EvalPreprocess
from bagmar_cli.errors import BagmarError, UsageError

MAX_SIDECAR_BYTES = 16 << 20  # a sidecar is a few KB (class names included); refuse anything absurd


class Resize(BaseModel):
    """How images are resized before normalisation."""

    model_config = ConfigDict(extra="forbid")
    height: PositiveInt
    width: PositiveInt
    filter: Literal["bilinear"]


class Sidecar(BaseModel):
    """Everything needed to serve an export with only its runtime and Pillow (see docs/export.md)."""

    model_config = ConfigDict(extra="forbid")
    format: Literal["onnx", "torchscript", "safetensors"]
    file: str  # the export's file name
    bagmar_version: str
    torch_version: str
    opset: PositiveInt | None  # ONNX opset; None for other formats
    source_checkpoint: str
    source_checkpoint_sha256: str
    input: str  # name of the input tensor
    output: Literal["logits", "probabilities"]  # what the model returns, and the name of that output
    batch: Literal["dynamic"] | PositiveInt  # a fixed batch size, or any
    classes: list[str]  # class names in output order
    input_size: Annotated[list[PositiveInt], Field(min_length=3, max_length=3)]  # [C, H, W]
    channels: Literal["L", "RGB"] | None  # Pillow mode of the input images
    resize: Resize  # without preprocess: stretch to height x width, then normalise
    mean: list[Finite]  # per channel, for pixels scaled to [0, 1]
    std: list[PositiveFinite]
    preprocess: EvalPreprocess | None = None  # models trained on image files: resize, center crop, normalise
    posthoc: PosthocRecord | None  # the baked-in post-hoc method
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
        raise UsageError(f"{path} has no sidecar {sidecar.name}; predict needs it (bagmar export writes it)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BagmarError(f"cannot read {sidecar}: {exc}") from None
    try:
        parsed = Sidecar.model_validate(raw)
    except ValidationError as exc:
        raise BagmarError(f"{sidecar} is not a valid bagmar export sidecar: {first_error(exc)}") from None
    if parsed.format == "safetensors":
        raise BagmarError(f"{sidecar}: a bundle is read directly (pass the .safetensors file), not through its sidecar")
    return parsed
