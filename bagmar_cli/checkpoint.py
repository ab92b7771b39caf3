"""The only module that reads or writes checkpoints: safetensors files, never pickle.

A checkpoint holds tensors under prefixes (`model.`, `loss.`, `optim.`, `rng.`) and metadata as
JSON strings (safetensors metadata values must be strings). Writes are atomic: a temporary file in
the same directory, fsync, then rename, so a crash or a full disk never damages the previous file.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from bagmar_cli import __version__
from bagmar_cli.errors import CheckpointError, WriteError

FORMAT = "bagmar-checkpoint"
FORMAT_VERSION = 1


@dataclass
class Checkpoint:
    """Tensors and decoded metadata of one checkpoint file."""

    tensors: dict[str, torch.Tensor]
    meta: dict[str, Any]
    path: Path | None = None
    sha256: str = field(default="", repr=False)

    def section(self, prefix: str) -> dict[str, torch.Tensor]:
        """The tensors under `prefix.`, with the prefix removed (e.g. a state_dict)."""
        start = prefix + "."
        return {k[len(start) :]: v for k, v in self.tensors.items() if k.startswith(start)}


def save_checkpoint(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> Path:
    """Write tensors and metadata atomically; the format fields and version are added here."""
    header = {"format": FORMAT, "format_version": FORMAT_VERSION, "bagmar_version": __version__, **meta}
    encoded = {key: json.dumps(value) for key, value in header.items()}
    contiguous = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    atomic_write(Path(path), save(contiguous, metadata=encoded))
    return Path(path)


def load_checkpoint(path: Path, *, tensors: bool = True) -> Checkpoint:
    """Read and validate a bagmar checkpoint; `tensors=False` reads only the metadata."""
    path = Path(path)
    raw = _read_bytes(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = _decode(handle.metadata(), path)
            loaded = {key: handle.get_tensor(key) for key in handle.keys()} if tensors else {}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path} is not a valid safetensors file ({_first_line(exc)})") from None
    return Checkpoint(loaded, meta, path, hashlib.sha256(raw).hexdigest())


def update_metadata(path: Path, updates: dict[str, Any]) -> Checkpoint:
    """Rewrite a checkpoint with some metadata keys replaced; the tensors are written back unchanged."""
    ckpt = load_checkpoint(path)
    meta = {k: v for k, v in ckpt.meta.items() if k not in ("format", "format_version", "bagmar_version")}
    save_checkpoint(Path(path), ckpt.tensors, {**meta, **updates})
    return load_checkpoint(path)


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, for provenance fields in metadata and export sidecars."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_write(path: Path, data: bytes) -> None:
    """Write bytes to a temporary sibling, fsync and rename over `path`; the old file survives any failure.

    An OSError (full disk, read-only place) is raised as a WriteError naming `path`.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise WriteError.of(exc, path) from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise WriteError.of(exc, path) from exc
        raise


def _read_bytes(path: Path) -> bytes:
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory, expected a .safetensors checkpoint")
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
