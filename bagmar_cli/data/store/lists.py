"""Writing a dataset directory whose splits are lists of image files (a `ListPlan`: lists, writers, manifest
fields), and what `prepare` says about it: counts per split, shot groups, and warnings about the split's shape."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from bagmar_cli import __version__
from bagmar_cli.console import info, warn
from bagmar_cli.data.filelists import FileList, write_list
from bagmar_cli.data.manifest import FORMAT_VERSION, ListSplitInfo, Manifest, SourceInfo, write_manifest
from bagmar_cli.data.store.staging import staged_directory
from bagmar_cli.functional.metrics import shot_groups

AS_LISTED = "as-listed"  # the manifest's profile when the lists (or folders) are used as they are
INPUT_SIZE = [3, 224, 224]  # what the network sees after the evaluation crop; images on disk vary in size
BARELY_LONG_TAILED = 2.0  # a training split whose largest / smallest class is below this is warned about
UPSCALED = 2.0  # a default input size this many times the images' shorter side (or more) is warned about


@dataclass(frozen=True)
class ListPlan:
    """What a file-list dataset directory will hold."""

    dataset: str
    classes: list[str]
    lists: dict[str, tuple[FileList, str, Callable[[Path], None]]]  # split -> (list, file name, writer)
    image_root: Path
    imb: float
    profile: str
    seed: int
    val_per_class: int
    source: SourceInfo
    default_preset: str
    reported_split: str  # the split results are reported on
    mean: list[float]  # per-channel normalisation recorded in the manifest
    std: list[float]
    image_size: list[int] = field(default_factory=lambda: list(INPUT_SIZE))  # [C, H, W] the network sees
    eval_resize: int | None = None  # evaluation's shorter-side resize; None: image_size * 256/224
    native_size: list[int] | None = None  # [H, W] median of the training images as stored; None: not read


def class_names(train: FileList, num_classes: int) -> list[str]:
    """Each class's folder name in the training list (e.g. a WordNet id), or its label when folders disagree."""
    folders: dict[int, set[str]] = {}
    for path, label in zip(train.paths, train.labels.tolist(), strict=True):
        folders.setdefault(label, set()).add(path.rsplit("/", 2)[-2] if "/" in path else str(label))
    names = [next(iter(folders[c])) if len(folders.get(c, ())) == 1 else str(c) for c in range(num_classes)]
    return names if len(set(names)) == num_classes else [str(c) for c in range(num_classes)]


def copier(source: Path) -> Callable[[Path], None]:
    """A writer that copies an official list byte for byte (so its SHA-256 stays the published file's)."""

    def copy(dest: Path) -> None:
        shutil.copyfile(source, dest)

    return copy


def list_writer(files: FileList) -> Callable[[Path], None]:
    """A writer of a list built here."""
    return lambda dest: write_list(dest, files)


def write_plan(plan: ListPlan, out: Path, overwrite: bool) -> Path:
    """The lists and manifest of `plan`, staged and moved to `out`."""
    num_classes = len(plan.classes)
    infos = {
        split: ListSplitInfo(list_file=file, sha256=files.sha256, n=len(files.paths), counts=files.counts(num_classes))
        for split, (files, file, _) in plan.lists.items()
    }
    with staged_directory(out, overwrite) as tmp:
        for _, file, writer in plan.lists.values():
            writer(tmp / file)
        write_manifest(tmp, list_manifest(plan, infos))
    report(out, plan, infos)
    return out


def list_manifest(plan: ListPlan, infos: dict[str, ListSplitInfo]) -> Manifest:
    """The manifest of a file-list dataset (current format); the image root is recorded as an absolute path."""
    return Manifest(
        format_version=FORMAT_VERSION,
        dataset=plan.dataset,
        classes=plan.classes,
        image_size=plan.image_size,
        mean=plan.mean,
        std=plan.std,
        splits=infos,
        imb=plan.imb,
        profile=plan.profile,
        seed=plan.seed,
        val_per_class=plan.val_per_class,
        source=plan.source,
        default_preset=plan.default_preset,
        created_by=f"bagmar {__version__}",
        image_root=os.path.abspath(plan.image_root),
        reported_split=plan.reported_split,
        eval_resize=plan.eval_resize,
        native_size=plan.native_size,
    )


def report(out: Path, plan: ListPlan, infos: dict[str, ListSplitInfo]) -> None:
    """What was found: images and classes per split, the imbalance factor and the shot groups."""
    info(f"Wrote {out} (lists only; images stay under {os.path.abspath(plan.image_root)})")
    for name, split in infos.items():
        present = sum(1 for n in split.counts if n)
        info(f"  {name}: {split.n} images in {present} classes, {max(split.counts)} to {min(split.counts)} per class")
    groups = shot_groups(torch.tensor(infos["train"].counts))
    sizes = ", ".join(f"{int(mask.sum())} {group}" for group, mask in groups.items())
    info(f"  imbalance factor {plan.imb:g}; classes by training images: {sizes}")


def warn_absent(splits: dict[str, FileList], classes: list[str]) -> None:
    """Warn about classes that have no image in val or test: their accuracy there is undefined."""
    for name, files in splits.items():
        absent = [classes[c] for c, n in enumerate(files.counts(len(classes))) if n == 0]
        if absent and name != "train":
            warn(
                f"{len(absent)} classes have no {name} images (e.g. {absent[0]!r}): their {name} accuracy is undefined"
            )


def warn_balance(counts: list[int]) -> None:
    """Warn about a training split that is barely long-tailed (largest / smallest class below BARELY_LONG_TAILED)."""
    if max(counts) / min(counts) < BARELY_LONG_TAILED:
        warn(
            f"the training split is barely long-tailed (largest / smallest class = {max(counts) / min(counts):.2g}, "
            f"below {BARELY_LONG_TAILED:g}); `imb` FACTOR draws a long-tailed subset from a balanced tree"
        )


def warn_upscaled(native: list[int] | None, size: int, measured: bool) -> None:
    """Warn when the default input size upscales the training images UPSCALED times or more, naming `image_size`."""
    if native is None or size < UPSCALED * min(native):
        return
    height, width = native
    stats = "" if measured else " (and `measure_stats` for their own mean and std instead of ImageNet's)"
    warn(
        f"the training images are {height}x{width} pixels (median), but the network will see them at {size}x{size}, "
        f"the `image_size` default for ImageNet backbones: each is upscaled {size / min(native):.3g}x, at "
        f"{(size / min(native)) ** 2:.3g}x the compute of their own size; to train at their size pass "
        f"`image_size` {min(native)}{stats}"
    )
