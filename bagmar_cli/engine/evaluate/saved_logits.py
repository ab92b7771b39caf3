"""eval's saved logits (`save_logits`): one safetensors file per checkpoint, holding what outside analysis needs.

Tensors: `logits` (the model's raw logits, float32, [N, C]), `scores` (the scores eval evaluated: the post-hoc
method's at its τ, or the logits again when there is none) and `labels` (int64, [N]). The file's metadata (all
strings, as safetensors keeps it): `format` ("bagmar-logits"), `version`, `checkpoint`, `split`, `dataset`,
`method` ("none" for raw logits), `tau` ("" for none), and the JSON lists `classes` (class names in label order)
and `items` (row i's image: its file path for image-file datasets, `SPLIT:INDEX` for tensor datasets).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save

from bagmar_cli.data import load_manifest
from bagmar_cli.data.filelists import parse_list
from bagmar_cli.data.manifest import ListSplitInfo
from bagmar_cli.errors import CheckpointError, SettingError
from bagmar_cli.files import atomic_write

if TYPE_CHECKING:
    from bagmar_cli.engine.evaluate.evaluator import SplitOutputs
    from bagmar_cli.engine.evaluate.posthoc import Posthoc

FORMAT = "bagmar-logits"
VERSION = "1"
SUFFIX = ".logits.safetensors"


@dataclass(frozen=True)
class SavedLogits:
    """A file written by `save_logits`, read back."""

    logits: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor
    checkpoint: str
    split: str
    method: str | None
    tau: float | None
    classes: list[str]
    items: list[str]


def logits_paths(dest: Path, checkpoints: list[Path]) -> list[Path]:
    """Where each checkpoint's logits go: `dest` itself for one checkpoint and a `.safetensors` name; else files
    RUN-STEM.logits.safetensors in folder `dest` (RUN the checkpoint's folder). Two that would share a name are
    a SettingError."""
    if len(checkpoints) == 1 and dest.suffix == ".safetensors":
        return [dest]
    if dest.suffix == ".safetensors":
        raise SettingError(f"`save_logits` {dest}: with several checkpoints, give a folder (one file each goes there)")
    paths = [dest / f"{ckpt.resolve().parent.name}-{ckpt.stem}{SUFFIX}" for ckpt in checkpoints]
    for index, path in enumerate(paths):
        if path in paths[:index]:
            other = checkpoints[paths.index(path)]
            raise SettingError(
                f"`save_logits`: {checkpoints[index]} and {other} would both write {path.name}; evaluate them in "
                "two commands, or give each its own folder name"
            )
    return paths


def split_items(root: Path, split: str) -> list[str]:
    """Row i's image of `split` in evaluation order: a file path (image files) or `SPLIT:INDEX` (tensor files)."""
    manifest = load_manifest(root)
    info = manifest.splits[split]
    if isinstance(info, ListSplitInfo):
        images = manifest.images_dir(root)
        return [str(images / path) for path in parse_list(root / info.list_file, manifest.num_classes).paths]
    return [f"{split}:{index}" for index in range(sum(info.counts))]


def save_logits(path: Path, outputs: SplitOutputs, scores: torch.Tensor, posthoc: Posthoc | None) -> Path:
    """Write the file described above (atomically) and return its path."""
    meta = outputs.ckpt.meta
    root = outputs.root
    items = split_items(root, outputs.split) if root is not None else []
    metadata = {
        "format": FORMAT,
        "version": VERSION,
        "checkpoint": str(outputs.ckpt.path),
        "split": outputs.split,
        "dataset": "" if root is None else str(root),
        "method": "none" if posthoc is None else str(posthoc.method),
        "tau": "" if posthoc is None else repr(posthoc.tau),
        "classes": json.dumps(list(meta.classes)),
        "items": json.dumps(items),
    }
    tensors = {
        "logits": outputs.logits.float().contiguous(),
        "scores": scores.float().contiguous().clone(),  # its own storage even when it is the logits
        "labels": outputs.labels.to(torch.int64).contiguous(),
    }
    atomic_write(Path(path), save(tensors, metadata=metadata))
    return Path(path)


def load_logits(path: Path) -> SavedLogits:
    """Read a file `save_logits` wrote; CheckpointError when it is not one."""
    try:
        tensors = load_file(Path(path))
        with safe_open(str(path), "pt") as handle:
            metadata = dict(handle.metadata() or {})
    except (OSError, SafetensorError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a saved-logits file ({exc})") from None
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a saved-logits file (format {metadata.get('format')!r})")
    return SavedLogits(
        tensors["logits"],
        tensors["scores"],
        tensors["labels"],
        metadata["checkpoint"],
        metadata["split"],
        None if metadata["method"] == "none" else metadata["method"],
        float(metadata["tau"]) if metadata["tau"] else None,
        json.loads(metadata["classes"]),
        json.loads(metadata["items"]),
    )
