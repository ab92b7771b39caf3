"""What `bagmar export` was asked for, checked and parsed once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bagmar_cli.choices import ExportFormat, Output, PosthocMethod
from bagmar_cli.engine.serve.export.formats import format_of
from bagmar_cli.errors import CheckpointError, SettingError


@dataclass
class ExportOptions:
    """The options of `bagmar export` (docs/cli.md); strings are parsed into enums and paths on creation."""

    checkpoint: Path
    format: ExportFormat | str = ExportFormat.ONNX  # onnx, torchscript or safetensors (a bundle)
    tau: str = "auto"  # "auto" (what tune-tau recorded), "none", or a number
    method: PosthocMethod | str | None = None  # post-hoc method of a numeric tau (default pn, as for eval)
    out: Path | None = None  # default: beside the checkpoint, <stem> + the format's suffix
    batch: str | int | None = "dynamic"  # "dynamic" (None) or a fixed batch size
    check: bool = True  # compare the export with PyTorch on validation images
    output: Output | str | None = None  # logits or probabilities; None: probabilities for PN, else logits
    data: Path | None = None  # dataset directory, if not the one recorded in the checkpoint
    overwrite: bool = False
    weights: str | None = None  # ema or model; None: what validation used (restore.default_weights)
    tta: str | None = None  # test-time views baked into the export (engine/evaluate/tta.py); None: its eval.tta

    def __post_init__(self) -> None:
        self.format = ExportFormat.parse(self.format)
        self.output = Output.parse_optional(self.output)
        self.method = PosthocMethod.parse_optional(self.method)
        self.batch = parse_batch(self.batch)
        self.out = Path(self.out) if self.out else _default_out(Path(self.checkpoint), self.format)

    @property
    def out_path(self) -> Path:
        """`out`, never None after creation (the default filled in)."""
        assert self.out is not None  # set by __post_init__
        return self.out


def parse_batch(value: str | int | None) -> int | None:
    """ "dynamic" (or None) becomes None; otherwise a positive batch size."""
    if value is None or value == "dynamic":
        return None
    try:
        size = int(value)
    except ValueError:
        raise SettingError(f"`batch` {value!r}: expected dynamic or a positive integer") from None
    if size < 1:
        raise SettingError(f"`batch` {value!r}: expected dynamic or a positive integer")
    return size


def _default_out(checkpoint: Path, fmt: ExportFormat) -> Path:
    """Beside the checkpoint: best.safetensors -> best.onnx, best.torchscript.pt, best.bundle.safetensors."""
    if not checkpoint.name or checkpoint.is_dir():
        raise CheckpointError(f"{str(checkpoint)!r} is not a checkpoint file")
    return checkpoint.with_name(checkpoint.stem + format_of(fmt).suffix)
