"""The only module that reads or writes checkpoints: safetensors files, never pickle.

A checkpoint holds tensors under prefixes (`model.`, `loss.`, `optim.`, `rng.`) and metadata as
JSON strings (safetensors metadata values must be strings), typed by `checkpoint_meta.CheckpointMeta` and
validated when the file is opened. Writes are atomic (`files.atomic_write`), so a crash or a full disk never
damages the previous file.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError
from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from bagmar_cli import __version__
from bagmar_cli.checkpoint_meta import (
    ADAPTERS_FORMAT,
    FORMAT,
    FORMAT_VERSION,
    AdapterMeta,
    CheckpointMeta,
    first_error,
    parse_meta,
)
from bagmar_cli.errors import CheckpointError
from bagmar_cli.files import atomic_write

HEAD_WEIGHT = "model.head.weight"  # one row per class in both heads (linear and normed)


@dataclass
class Checkpoint:
    """Tensors and decoded metadata of one checkpoint file."""

    tensors: dict[str, torch.Tensor]
    meta: CheckpointMeta
    path: Path | None = None
    sha256: str = field(default="", repr=False)

    def section(self, prefix: str) -> dict[str, torch.Tensor]:
        """The tensors under `prefix.`, with the prefix removed (e.g. a state_dict)."""
        start = prefix + "."
        return {k[len(start) :]: v for k, v in self.tensors.items() if k.startswith(start)}


def save_checkpoint(path: Path, tensors: dict[str, torch.Tensor], meta: CheckpointMeta) -> Path:
    """Write tensors and metadata atomically; the format fields and version are set here."""
    header = meta.encoded() | {"format": FORMAT, "format_version": FORMAT_VERSION, "bagmar_version": __version__}
    encoded = {key: json.dumps(value, allow_nan=False) for key, value in header.items()}
    contiguous = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    atomic_write(Path(path), save(contiguous, metadata=encoded))
    return Path(path)


def save_adapters(path: Path, tensors: dict[str, torch.Tensor], meta: AdapterMeta) -> Path:
    """Write an adapters-only file (`models.finetune.adapter_state_dict` tensors, model-state keys) atomically."""
    header = meta.model_dump(mode="json") | {"bagmar_version": __version__}
    encoded = {key: json.dumps(value, allow_nan=False) for key, value in header.items()}
    contiguous = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    atomic_write(Path(path), save(contiguous, metadata=encoded))
    return Path(path)


def load_adapters(path: Path) -> tuple[dict[str, torch.Tensor], AdapterMeta]:
    """Read and validate an adapters-only file: its tensors (for `models.finetune.load_adapter_state`) and metadata."""
    path = Path(path)
    _read_bytes(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            raw = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 (safe_open is not iterable)
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path} is not a valid safetensors file ({_first_line(exc)})") from None
    if raw.get("format") != json.dumps(ADAPTERS_FORMAT):
        raise CheckpointError(f"{path} is not a bagmar adapters file (format {raw.get('format')!r})")
    try:
        meta = AdapterMeta.model_validate({key: json.loads(value) for key, value in raw.items()})
    except (json.JSONDecodeError, ValidationError) as exc:
        problem = first_error(exc) if isinstance(exc, ValidationError) else "not JSON"
        raise CheckpointError(f"{path}: adapters metadata {problem}") from None
    return tensors, meta


def load_checkpoint(path: Path, *, tensors: bool = True) -> Checkpoint:
    """Read and validate a bagmar checkpoint; `tensors=False` reads only the metadata."""
    path = Path(path)
    raw = _read_bytes(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = _decode(handle.metadata(), path)
            loaded = {key: handle.get_tensor(key) for key in handle.keys()} if tensors else {}  # noqa: SIM118 (safe_open is not iterable)
            head = handle.get_slice(HEAD_WEIGHT).get_shape() if HEAD_WEIGHT in handle.keys() else None  # noqa: SIM118 (as above)
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path} is not a valid safetensors file ({_first_line(exc)})") from None
    try:
        typed = parse_meta(meta)
    except ValueError as exc:
        raise CheckpointError(f"{path}: checkpoint metadata {exc}") from None
    _check_head(path, head, typed)
    return Checkpoint(loaded, typed, path, hashlib.sha256(raw).hexdigest())


def checkpoint_meta_of(path: Path) -> CheckpointMeta | None:
    """The metadata of `path` when it is a valid bagmar checkpoint (the header only is read), else None: a weights
    file that may be a timm state dict."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            raw = handle.metadata()
        return parse_meta(_decode(raw, Path(path)))
    except (SafetensorError, OSError, ValueError, RuntimeError, CheckpointError):
        return None


def update_metadata(path: Path, updates: dict[str, Any]) -> Checkpoint:
    """Rewrite a checkpoint with some metadata fields replaced (validated); the tensors are written back unchanged."""
    ckpt = load_checkpoint(path)
    try:
        meta = parse_meta(ckpt.meta.model_dump(mode="json") | updates)
    except ValueError as exc:
        raise CheckpointError(f"{path}: new checkpoint metadata {exc}") from None
    save_checkpoint(Path(path), ckpt.tensors, meta)
    return load_checkpoint(path)


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, for provenance fields in metadata and export sidecars."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_head(path: Path, shape: list[int] | None, meta: CheckpointMeta) -> None:
    """The head's weight (its shape read from the header) must have one row per class the metadata names."""
    if shape is None:
        raise CheckpointError(f"{path} has no {HEAD_WEIGHT} tensor: not a model checkpoint")
    if len(shape) != 2 or shape[0] != meta.model.num_classes:
        raise CheckpointError(
            f"{path}: checkpoint metadata field model.num_classes: says {meta.model.num_classes} classes, "
            f"but the head's weight has shape {list(shape)}"
        )


def _read_bytes(path: Path) -> bytes:
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory, expected a .safetensors checkpoint")
    if path.exists() and not path.is_file():
        raise CheckpointError(f"{path} is not a regular file (a FIFO or device?), expected a .safetensors checkpoint")
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} not found") from None
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc.strerror}") from None
    if len(raw) < 8:
        raise CheckpointError(f"{path} is not a safetensors checkpoint (file is {len(raw)} bytes)")
    return raw


def _decode(raw: dict[str, str] | None, path: Path) -> dict[str, Any]:
    if not raw or "format" not in raw:
        raise CheckpointError(f"{path} is a safetensors file but not a bagmar checkpoint (no bagmar metadata)")
    if raw["format"] != json.dumps(FORMAT):  # e.g. {"format": "pt"}, as other programs write
        raise CheckpointError(f"{path} is a safetensors file but not a bagmar checkpoint (format {raw['format']!r})")
    try:
        meta = {key: json.loads(value) for key, value in raw.items()}
    except json.JSONDecodeError:
        raise CheckpointError(f"{path} has damaged bagmar metadata (not JSON)") from None
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {version}; this bagmar ({__version__}) reads up to "
            f"{FORMAT_VERSION}: upgrade bagmar"
        )
    return meta


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
