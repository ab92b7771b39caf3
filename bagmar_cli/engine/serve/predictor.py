"""Classify image files with any model bagmar writes: a checkpoint, a bundle, an ONNX or a TorchScript export.

The model is loaded by `export.loaded.load_model` (a `LoadedModel`: a runner plus what its inputs and outputs
mean). Each image is opened with Pillow and converted to the model's channels ("L" or "RGB"). A model trained on
image files records its evaluation preprocessing (resize, center crop, normalise: `EvalPreprocess`), applied
exactly as `bagmar eval` applies it; a model trained on tensors has the image resized to H×W with bilinear
filtering when its size differs, scaled to [0, 1] and normalised with mean and std, as `bagmar eval` normalises
its uint8 images. Scores are probabilities: the softmax of logits, or the model's own probabilities (PN).
"""

from __future__ import annotations

import stat
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from bagmar_cli.data.augment.tensors import eval_transform
from bagmar_cli.engine.serve.export.loaded import LoadedModel, load_model
from bagmar_cli.errors import SettingError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"})


def find_images(paths: Sequence[Path]) -> list[Path]:
    """Files as given, and image files under folders (recursive, sorted by path)."""
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        elif path.exists():
            if not stat.S_ISREG(path.stat().st_mode):
                raise SettingError(f"{path}: not a regular file (a FIFO, socket or device); predict reads image files")
            found.append(path)
        else:
            raise SettingError(f"{path}: no such file or folder")
    if not found:
        suffixes = ", ".join(sorted(IMAGE_SUFFIXES))
        raise SettingError(f"no images found in {', '.join(map(str, paths))} (looked for {suffixes})")
    return found


def read_image(path: Path, mode: str, height: int, width: int) -> Tensor:
    """uint8 (C, H, W): Pillow open, convert to `mode`, bilinear resize to height×width when needed."""
    with Image.open(path) as opened:
        image = _as_8bit(opened, path).convert(mode)
        if image.size != (width, height):
            image = image.resize((width, height), Image.Resampling.BILINEAR)
        array = np.asarray(image, dtype=np.uint8).reshape(height, width, -1)
    return torch.from_numpy(array.transpose(2, 0, 1).copy())


def _as_8bit(image: Image.Image, path: Path) -> Image.Image:
    """16-bit grey images (PNG "I;16", "I") scaled to 8 bits, as convert("L") would clip them to white."""
    if image.mode not in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return image
    array = np.asarray(image)
    if image.mode == "F" or array.min() < 0 or array.max() > 65535:
        raise ValueError(f"{image.mode} images beyond 16 bits are not supported; save {path.name} as 8 or 16 bit")
    return Image.fromarray(np.round(array.astype(np.float64) / 257.0).astype(np.uint8), mode="L")


def prepare_image(model: LoadedModel, path: Path) -> Tensor:
    """The image file at `path` as the model's input, float (C, H, W), prepared as `bagmar eval` prepares it."""
    if model.preprocess is None:
        _, height, width = model.input_size
        prepared: Tensor = eval_transform(model.mean, model.std)(read_image(path, model.channels, height, width))
    else:
        with Image.open(path) as image:
            prepared = model.preprocess.transform()(_as_8bit(image, path).convert(model.channels))
    return prepared


def _try_read(model: LoadedModel, path: Path) -> Tensor | str:
    """The prepared image, or the reason it cannot be read."""
    try:
        return prepare_image(model, path)
    except Exception as exc:  # noqa: BLE001 -- a bad file must not stop the batch: Pillow raises many types on damaged data
        return f"cannot read image: {str(exc).strip() or type(exc).__name__}"


def top_k(probs: Tensor, classes: list[str], k: int) -> list[list[dict[str, Any]]]:
    """Per row, the k most probable classes as {"class", "index", "score"}, best first."""
    scores, indices = probs.topk(min(k, probs.shape[1]), dim=1)
    return [
        [{"class": classes[i], "index": i, "score": s} for i, s in zip(row_i.tolist(), row_s.tolist(), strict=True)]
        for row_i, row_s in zip(indices, scores, strict=True)
    ]


def predict_images(
    model_path: Path,
    paths: Sequence[Path],
    *,
    k: int = 1,
    batch_size: int = 256,
    device: str = "auto",
    tta: str | None = None,
) -> Iterator[dict[str, Any]]:
    """One entry per image, in order: {"path", "top_k"} or, for an unreadable file, {"path", "error"}; `tta`: the
    test-time views (export.loaded.load_model)."""
    files = find_images(paths)
    model = load_model(model_path, device, tta)
    for start in range(0, len(files), batch_size):
        yield from _predict_batch(model, files[start : start + batch_size], k)


def _predict_batch(model: LoadedModel, files: list[Path], k: int) -> Iterator[dict[str, Any]]:
    """Entries for one batch of files; unreadable ones get an error and do not stop the others."""
    model.channels  # noqa: B018  (a model of other than 1 or 3 channels is a usage error, before any file)
    loaded = [_try_read(model, path) for path in files]
    images = [item for item in loaded if isinstance(item, Tensor)]
    ranked = iter(top_k(model.probabilities(torch.stack(images)), model.classes, k) if images else [])
    for path, item in zip(files, loaded, strict=True):
        failed = isinstance(item, str)
        yield {"path": str(path), "error": item} if failed else {"path": str(path), "top_k": next(ranked)}


def format_entry(entry: dict[str, Any]) -> str:
    """The readable line of one entry: `path  class (score)`, then the next classes (`top_k`)."""
    if "error" in entry:
        return f"{entry['path']}  error: {entry['error']}"
    return "  ".join([entry["path"], *(f"{top['class']} ({top['score']:.4f})" for top in entry["top_k"])])
