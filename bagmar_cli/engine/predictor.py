"""Classify image files with any model bagmar writes: a checkpoint, a bundle, an ONNX or a TorchScript export.

Every model kind becomes a `ServedModel`: a runner on normalised batches plus what its inputs and outputs
mean. Each image is opened with Pillow, converted to the model's channels ("L" or "RGB"), resized to
H×W with bilinear filtering when its size differs, scaled to [0, 1] and normalised with mean and std,
exactly as `bagmar eval` normalises its uint8 images. Scores are probabilities: the softmax of logits,
or the model's own probabilities (PN).
"""

from __future__ import annotations

import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from bagmar_cli.data.transforms import eval_transform
from bagmar_cli.engine.exporter import (
    CHANNELS,
    Runner,
    load_export,
    serving_from_checkpoint,
    torch_runner,
)
from bagmar_cli.engine.restore import load_weights
from bagmar_cli.engine.runtime import resolve_device
from bagmar_cli.engine.sidecar import read_sidecar
from bagmar_cli.errors import BagmarError, UsageError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"})


@dataclass
class ServedModel:
    """A runner on normalised image batches, and what its inputs and outputs mean."""

    run: Runner
    classes: list[str]  # class names in output order
    input_size: list[int]  # [C, H, W]
    mean: list[float]  # per channel, for pixels scaled to [0, 1]
    std: list[float]
    output: str  # "logits" or "probabilities"
    source: str = "the model"  # the file that describes classes and outputs, for error messages

    @property
    def channels(self) -> str:
        """The Pillow mode images are converted to."""
        mode = CHANNELS.get(self.input_size[0])
        if mode is None:
            raise UsageError(f"the model takes {self.input_size[0]}-channel images; predict reads only L or RGB")
        return mode

    def probabilities(self, images: Tensor) -> Tensor:
        """Class probabilities (N, C) of uint8 images (N, C, H, W)."""
        outputs = self.run(eval_transform(self.mean, self.std)(images)).float()
        if outputs.ndim != 2 or outputs.shape[1] != len(self.classes):
            raise BagmarError(
                f"{self.source}: field classes names {len(self.classes)} classes but the model gives "
                f"{list(outputs.shape)[1:]} outputs per image"
            )
        return outputs if self.output == "probabilities" else torch.softmax(outputs, dim=1)


def load_model(path: Path, device: str = "auto") -> ServedModel:
    """Any model kind: a .safetensors checkpoint or bundle, else an export described by its `<path>.json`."""
    path = Path(path)
    if path.exists() and not path.is_file() and not path.is_dir():
        raise UsageError(f"model {path}: not a regular file (a FIFO, socket or device)")
    torch_device = resolve_device(device)
    if path.suffix == ".safetensors":
        return _from_checkpoint(path, torch_device)
    return _from_export(path, torch_device)


def _from_checkpoint(path: Path, device: torch.device) -> ServedModel:
    """A checkpoint or bundle, served with its recorded post-hoc method."""
    ckpt = load_weights(path)
    serving = serving_from_checkpoint(ckpt).to(device)
    spec = ckpt.meta.model
    return ServedModel(
        torch_runner(serving, device),
        ckpt.meta.classes,
        spec.input_size,
        spec.mean,
        spec.std,
        serving.output,
        str(path),
    )


def _from_export(path: Path, device: torch.device) -> ServedModel:
    """An ONNX or TorchScript export, read through the runtime its sidecar names."""
    if not path.is_file():
        raise UsageError(f"model {path} not found")
    sidecar = read_sidecar(path)
    run = load_export(path, sidecar.format, sidecar.fixed_batch, device)
    return ServedModel(
        run, sidecar.classes, sidecar.input_size, sidecar.mean, sidecar.std, sidecar.output, f"{path}.json"
    )


def find_images(paths: Sequence[Path]) -> list[Path]:
    """Files as given, and image files under folders (recursive, sorted by path)."""
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        elif path.exists():
            if not stat.S_ISREG(path.stat().st_mode):
                raise UsageError(f"{path}: not a regular file (a FIFO, socket or device); predict reads image files")
            found.append(path)
        else:
            raise UsageError(f"{path}: no such file or folder")
    if not found:
        suffixes = ", ".join(sorted(IMAGE_SUFFIXES))
        raise UsageError(f"no images found in {', '.join(map(str, paths))} (looked for {suffixes})")
    return found


def read_image(path: Path, mode: str, height: int, width: int) -> Tensor:
    """uint8 (C, H, W): Pillow open, convert to `mode`, bilinear resize to height×width when needed."""
    with Image.open(path) as image:
        image = _as_8bit(image, path).convert(mode)
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


def _try_read(path: Path, mode: str, height: int, width: int) -> Tensor | str:
    """The image, or the reason it cannot be read."""
    try:
        return read_image(path, mode, height, width)
    except Exception as exc:  # a bad file must not stop the batch: Pillow raises many types on damaged data
        return f"cannot read image: {str(exc).strip() or type(exc).__name__}"


def top_k(probs: Tensor, classes: list[str], k: int) -> list[list[dict[str, Any]]]:
    """Per row, the k most probable classes as {"class", "index", "score"}, best first."""
    scores, indices = probs.topk(min(k, probs.shape[1]), dim=1)
    return [
        [{"class": classes[i], "index": i, "score": s} for i, s in zip(row_i.tolist(), row_s.tolist())]
        for row_i, row_s in zip(indices, scores)
    ]


def predict_images(
    model_path: Path, paths: Sequence[Path], *, k: int = 1, batch_size: int = 256, device: str = "auto"
) -> Iterator[dict[str, Any]]:
    """One entry per image, in order: {"path", "top_k"} or, for an unreadable file, {"path", "error"}."""
    files = find_images(paths)
    model = load_model(model_path, device)
    for start in range(0, len(files), batch_size):
        yield from _predict_batch(model, files[start : start + batch_size], k)


def _predict_batch(model: ServedModel, files: list[Path], k: int) -> Iterator[dict[str, Any]]:
    """Entries for one batch of files; unreadable ones get an error and do not stop the others."""
    mode, (_, height, width) = model.channels, model.input_size
    loaded = [_try_read(path, mode, height, width) for path in files]
    images = [item for item in loaded if isinstance(item, Tensor)]
    ranked = iter(top_k(model.probabilities(torch.stack(images)), model.classes, k) if images else [])
    for path, item in zip(files, loaded):
        failed = isinstance(item, str)
        yield {"path": str(path), "error": item} if failed else {"path": str(path), "top_k": next(ranked)}


def format_entry(entry: dict[str, Any]) -> str:
    """The readable line of one entry: `path  class (score)`, then the next classes with --top-k."""
    if "error" in entry:
        return f"{entry['path']}  error: {entry['error']}"
    return "  ".join([entry["path"], *(f"{top['class']} ({top['score']:.4f})" for top in entry["top_k"])])
