"""The split files of an in-memory dataset: `<split>.safetensors` with uint8 images and int64 labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save

from bagmar_cli.data.manifest import ListSplitInfo, Manifest, SplitInfo, load_manifest
from bagmar_cli.errors import DatasetError


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
