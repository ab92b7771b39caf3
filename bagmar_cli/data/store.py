"""Where prepared datasets live on disk, and their split files: `<split>.safetensors` with images and labels."""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save

from bagmar_cli.data.manifest import MANIFEST_NAME, ListSplitInfo, Manifest, SplitInfo, load_manifest
from bagmar_cli.errors import DatasetError, SettingError, WriteError

DATA_DIR_ENV = "BAGMAR_DATA_DIR"


def data_root() -> Path:
    """$BAGMAR_DATA_DIR, or ./data: the parent of prepared datasets and of `downloads/`."""
    return Path(os.environ.get(DATA_DIR_ENV) or "data")


def default_data_dir(name: str, imb: float, profile: str = "exp") -> Path:
    """Where `prepare_dataset` writes by default, e.g. data/cifar100-lt-imb100 or data/cifar10-lt-imb10-step."""
    suffix = "" if profile == "exp" else f"-{profile}"
    return data_root() / f"{name}-lt-imb{imb:g}{suffix}"


def save_split(root: Path, split: str, images: np.ndarray, labels: np.ndarray, num_classes: int) -> SplitInfo:
    """Write `<split>.safetensors` into `root` and describe it for the manifest."""
    file = f"{split}.safetensors"
    tensors = {
        "images": torch.from_numpy(np.ascontiguousarray(images, dtype=np.uint8)),
        "labels": torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64)),
    }
    (root / file).write_bytes(save(tensors))  # not save_file, which writes mode 0600 whatever the umask
    counts = np.bincount(labels, minlength=num_classes).tolist()
    return SplitInfo(file=file, n=len(labels), counts=counts)


def load_split(root: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images uint8 (N, C, H, W) and labels int64 (N,) of `split`, checked against the manifest."""
    root = Path(root)
    manifest = load_manifest(root)
    info = manifest.splits.get(split)
    if info is None:
        raise DatasetError(f"dataset {root} has no split {split!r}; available: {', '.join(manifest.splits)}")
    if isinstance(info, ListSplitInfo):
        raise DatasetError(
            f"split {split!r} of {root} is a list of image files, not a tensor file (data.splits.open_split reads both)"
        )
    path = root / info.file
    if not path.is_file():
        raise DatasetError(f"{path} is missing: split {split!r} of {root} cannot be read")
    try:
        tensors = load_file(path)
    except Exception as exc:  # safetensors reports damage as SafetensorError, OSError or others
        raise DatasetError(f"{path} is not a readable safetensors file ({exc})") from exc
    images, labels = tensors.get("images"), tensors.get("labels")
    return _check_split(path, images, labels, info, manifest)


def _check_split(
    path: Path, images: torch.Tensor | None, labels: torch.Tensor | None, info: SplitInfo, manifest: Manifest
) -> tuple[torch.Tensor, torch.Tensor]:
    """`images, labels`; DatasetError unless they have the manifest's shapes, label range and per-class counts."""
    if images is None or labels is None:
        raise DatasetError(f"{path} must hold tensors 'images' and 'labels'")
    size = tuple(manifest.image_size)
    if images.dtype != torch.uint8 or images.ndim != 4 or tuple(images.shape[1:]) != size:
        raise DatasetError(f"{path}: images are {images.dtype} {tuple(images.shape)}, expected uint8 (N, *{size})")
    if labels.dtype != torch.int64 or labels.shape != (info.n,) or len(images) != info.n:
        raise DatasetError(
            f"{path}: {len(images)} images and labels {labels.dtype} {tuple(labels.shape)}, "
            f"expected {info.n} of each with int64 labels"
        )
    if info.n and (labels.min() < 0 or labels.max() >= manifest.num_classes):
        raise DatasetError(f"{path}: labels outside [0, {manifest.num_classes})")
    if torch.bincount(labels, minlength=manifest.num_classes).tolist() != info.counts:
        raise DatasetError(f"{path}: per-class counts differ from the manifest's")
    return images, labels


@contextmanager
def staged_directory(out: Path, overwrite: bool) -> Iterator[Path]:
    """A fresh sibling of `out` to write into, moved to `out` when the block succeeds and removed if it fails.

    An OSError (full disk, read-only place) is raised as a WriteError naming `out`.
    """
    out = Path(os.path.abspath(out))  # "." and ".." have no name to make a sibling's from
    tmp = out.with_name(f".{out.name}.tmp-{secrets.token_hex(4)}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
    except OSError as exc:
        raise WriteError.of(exc, out) from exc
    try:
        yield tmp
        _publish(tmp, out, overwrite)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError):
            raise WriteError.of(exc, out) from exc
        raise


def check_writable(out: Path, overwrite: bool) -> None:
    """Refuse an `out` that exists, unless `overwrite` and it is provably a bagmar dataset (nothing else in it).

    A file standing at `out` is a usage error (exit 2, like `train --out FILE`); the rest are DatasetErrors.
    """
    if not out.exists():
        return
    if not out.is_dir():
        raise SettingError(f"{out} exists and is not a directory; choose another output directory")
    if not overwrite:
        raise DatasetError(f"{out} already exists; pass --overwrite to replace it, or choose another output")
    if any(out.iterdir()):  # --overwrite deletes what it replaces: only what bagmar wrote there
        in_the_way = _not_written_by_bagmar(out)
        if in_the_way:
            shown = ", ".join(str(out / name) for name in in_the_way[:5])
            more = f" and {len(in_the_way) - 5} more" if len(in_the_way) > 5 else ""
            raise DatasetError(
                f"{out} holds files bagmar did not write ({shown}{more}); --overwrite replaces only a dataset "
                "directory holding nothing else: move them, or choose another output directory"
            )


def _not_written_by_bagmar(out: Path) -> list[str]:
    """Names in dataset directory `out` that are not its manifest or the split files that manifest lists."""
    if not (out / MANIFEST_NAME).is_file():
        raise DatasetError(
            f"{out} is not a dataset directory (no {MANIFEST_NAME}); --overwrite replaces only "
            "those: choose another output directory"
        )
    try:
        manifest = load_manifest(out)
    except DatasetError as exc:
        raise DatasetError(f"--overwrite replaces only a bagmar dataset directory: {exc}") from None
    ours = {MANIFEST_NAME} | {
        split.list_file if isinstance(split, ListSplitInfo) else split.file for split in manifest.splits.values()
    }
    entries = sorted(out.iterdir(), key=lambda p: p.name)
    return [p.name for p in entries if p.name not in ours or p.is_symlink() or not p.is_file()]


def _publish(tmp: Path, out: Path, overwrite: bool) -> None:
    """Rename `tmp` to `out`; an existing `out` is moved aside first and deleted after."""
    check_writable(out, overwrite)
    if not out.exists():
        tmp.rename(out)
        return
    old = out.with_name(f".{out.name}.old-{secrets.token_hex(4)}")
    out.rename(old)
    try:
        tmp.rename(out)
    except OSError:
        old.rename(out)
        raise
    shutil.rmtree(old, ignore_errors=True)
