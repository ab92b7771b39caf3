"""The in-memory sources (cifar, digits, fashion_mnist): their spec, and their prepare step.

`prepare_dataset` reads the whole source into memory, draws the long-tailed train split (and a balanced val split)
and writes uint8 tensor files with a manifest; `tensor_source` registers a spec as such a source.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from bagmar_cli import __version__
from bagmar_cli.console import info
from bagmar_cli.data.longtail import (
    check_imb,
    check_profile,
    check_subset,
    lt_counts,
    select_cao2019,
    select_long_tail,
    selection_sha256,
)
from bagmar_cli.data.manifest import FORMAT_VERSION, Manifest, Selection, SourceInfo, SplitInfo, write_manifest
from bagmar_cli.data.sources.options import TENSOR_OPTIONS, PrepareOptions
from bagmar_cli.data.sources.registry import TENSORS, Source, get_dataset
from bagmar_cli.data.store.paths import default_data_dir
from bagmar_cli.data.store.staging import check_writable, staged_directory
from bagmar_cli.data.store.tensors import save_split
from bagmar_cli.errors import SettingError

Split = tuple[np.ndarray, np.ndarray]  # uint8 images (N, C, H, W), int64 labels (N,)


class SourceData(NamedTuple):
    """A dataset as its source holds it: uint8 (N, C, H, W) images and int64 labels, train and test."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    classes: list[str]
    source: SourceInfo


@dataclass(frozen=True)
class DatasetSpec:
    """What `prepare_dataset` needs to know about a dataset, and how to read its source."""

    name: str
    num_classes: int
    n_max: int | None  # images of the largest class; None: the smallest class count in the pool
    image_size: tuple[int, int, int]  # (C, H, W)
    mean: tuple[float, ...]  # per channel, for images scaled to [0, 1]
    std: tuple[float, ...]
    default_preset: str
    load_source: Callable[[Path | None], SourceData]  # source path (archive or folder) or None: find it


def tensor_source(spec: DatasetSpec) -> Source:
    """The registry entry of an in-memory dataset: kind TENSORS, prepared by `prepare_dataset`."""

    def prepare(options: PrepareOptions) -> Path:
        return prepare_dataset(
            spec.name,
            imb=100.0 if options.imb is None else options.imb,
            profile=options.profile,
            seed=options.seed,
            val_per_class=options.val_per_class,
            subset=options.subset,
            source=options.source,
            out=options.out,
            overwrite=options.overwrite,
        )

    return Source(name=spec.name, kind=TENSORS, accepts=TENSOR_OPTIONS, prepare=prepare, spec=spec)


def prepare_dataset(
    name: str,
    *,
    imb: float = 100.0,
    profile: str = "exp",
    seed: int = 0,
    val_per_class: int = 0,
    subset: str = "bagmar",
    source: Path | None = None,
    out: Path | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the long-tailed dataset directory for `name` and return its path.

    `subset` says which images the long tail keeps: "bagmar" (its own seeded draw) or "cao2019" (exactly Cao et
    al.'s CIFAR-LT images for this seed); the manifest records it with the kept indices' fingerprint.
    """
    spec = get_dataset(name)
    imb, profile = check_imb(imb), check_profile(profile)
    _check_count_option("seed", seed)
    _check_count_option("val_per_class", val_per_class)
    subset = check_subset(subset, spec.name, val_per_class)
    out = Path(out) if out is not None else default_data_dir(name, imb, profile)
    check_writable(out, overwrite)  # before the (possibly long) read of the source
    data = spec.load_source(Path(source) if source is not None else None)
    train, val = select_splits(spec, data, imb, profile, seed, val_per_class, subset)
    splits = _splits(data, train, val, val_per_class)
    with staged_directory(out, overwrite) as tmp:
        infos = {split: save_split(tmp, split, *arrays, spec.num_classes) for split, arrays in splits.items()}
        selection = Selection(subset=subset, train_sha256=selection_sha256(train))
        write_manifest(tmp, _manifest(spec, data, infos, imb, profile, seed, val_per_class, selection))
    _report(out, infos)
    return out


def draw_splits(
    spec: DatasetSpec,
    data: SourceData,
    imb: float,
    profile: str,
    seed: int,
    val_per_class: int,
    subset: str = "bagmar",
) -> dict[str, Split]:
    """The long-tailed train split, the balanced val split (when val_per_class > 0) and the whole test split."""
    train, val = select_splits(spec, data, imb, profile, seed, val_per_class, subset)
    return _splits(data, train, val, val_per_class)


def select_splits(
    spec: DatasetSpec, data: SourceData, imb: float, profile: str, seed: int, val_per_class: int, subset: str
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the training images the long tail keeps and of the val images.

    "bagmar" is `select_long_tail`'s selection, shared with `prepare folder`; "cao2019" is `select_cao2019`'s.
    """
    if subset == "cao2019":
        n_max = len(data.train_labels) // len(data.classes)  # the code's img_max: the per-class pool of the source
        counts = lt_counts(n_max, len(data.classes), imb, profile)
        return select_cao2019(data.train_labels, counts, seed), np.empty(0, dtype=np.int64)
    return select_long_tail(
        data.train_labels,
        data.classes,
        n_max=spec.n_max,
        imb=imb,
        profile=profile,
        seed=seed,
        val_per_class=val_per_class,
    )


def _splits(data: SourceData, train: np.ndarray, val: np.ndarray, val_per_class: int) -> dict[str, Split]:
    """The arrays of the train, val (when val_per_class > 0) and test splits."""
    splits = {"train": (data.train_images[train], data.train_labels[train])}
    if val_per_class:
        splits["val"] = (data.train_images[val], data.train_labels[val])
    splits["test"] = (data.test_images, data.test_labels)
    return splits


def _check_count_option(name: str, value: int) -> None:
    """SettingError unless `value` is a whole number >= 0."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise SettingError(f"{name} must be a whole number >= 0, got {value!r}")


def _manifest(
    spec: DatasetSpec,
    data: SourceData,
    splits: dict[str, SplitInfo],
    imb: float,
    profile: str,
    seed: int,
    val_per_class: int,
    selection: Selection,
) -> Manifest:
    """The manifest of the splits just written."""
    return Manifest(
        format_version=FORMAT_VERSION,
        dataset=spec.name,
        classes=data.classes,
        image_size=list(spec.image_size),
        mean=list(spec.mean),
        std=list(spec.std),
        splits=splits,
        imb=imb,
        profile=profile,
        seed=seed,
        val_per_class=val_per_class,
        selection=selection,
        source=data.source,
        default_preset=spec.default_preset,
        created_by=f"bagmar {__version__}",
    )


def _report(out: Path, splits: dict[str, SplitInfo]) -> None:
    """One stderr line per split: its size and the range of its per-class counts."""
    info(f"Wrote {out}")
    for name, split in splits.items():
        info(f"  {name}: {split.n} images, {max(split.counts)} to {min(split.counts)} per class")
