"""A user's image folders as a source (kind FILES): ROOT/{train,val,test}/<class>/* used as they are, or a flat
ROOT/<class>/* split by fractions; optionally a long-tailed draw, measured statistics and an input size.

Only the lists and the manifest are written; the images stay where they are, under `root`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from bagmar_cli.console import info
from bagmar_cli.data.filelists import FileList, from_pairs
from bagmar_cli.data.image_stats import STATS_SAMPLE, is_small, measure_size, measure_stats
from bagmar_cli.data.longtail import check_imb, check_profile, select_long_tail
from bagmar_cli.data.manifest import SourceInfo
from bagmar_cli.data.sources.benchmarks import IMAGENET_MEAN, IMAGENET_STD
from bagmar_cli.data.sources.folder_tree import (
    FLAT,
    FolderTree,
    check_fractions,
    is_split_tree,
    scan_tree,
    split_by_fractions,
)
from bagmar_cli.data.sources.options import FOLDER_OPTIONS, PrepareOptions
from bagmar_cli.data.sources.registry import FILES, Source, register_source
from bagmar_cli.data.store.lists import (
    AS_LISTED,
    INPUT_SIZE,
    ListPlan,
    list_writer,
    warn_absent,
    warn_balance,
    warn_upscaled,
    write_plan,
)
from bagmar_cli.data.store.paths import data_root
from bagmar_cli.data.store.staging import check_writable
from bagmar_cli.data.verify import check_root, verify_images
from bagmar_cli.errors import SettingError

FLAT_FRACTIONS = (0.1, 0.2)  # a flat tree's default val and test fractions


@register_source("folder")
def folder() -> Source:
    """A user's folder tree under `root`, prepared by `prepare_folder`."""

    def prepare(options: PrepareOptions) -> Path:
        assert options.root is not None  # check_options refuses a FILES source without `root`
        return prepare_folder(
            root=options.root, imb=options.imb, profile=options.profile, seed=options.seed,
            val_per_class=options.val_per_class, val_fraction=options.val_fraction,
            test_fraction=options.test_fraction, measure_stats=options.measure_stats, image_size=options.image_size,
            eval_resize=options.eval_resize, out=options.out, verify=options.verify, overwrite=options.overwrite,
        )  # fmt: skip

    return Source(name="folder", kind=FILES, accepts=FOLDER_OPTIONS, prepare=prepare)


def prepare_folder(
    *,
    root: Path,
    imb: float | None = None,
    profile: str = "exp",
    seed: int = 0,
    val_per_class: int = 0,
    val_fraction: float | None = None,
    test_fraction: float | None = None,
    measure_stats: bool = False,
    image_size: int | None = None,
    eval_resize: int | None = None,
    out: Path | None = None,
    verify: bool = True,
    overwrite: bool = False,
) -> Path:
    """Write a dataset directory for ROOT/{train,val,test}/<class>/* or a flat ROOT/<class>/* split by fractions.

    With `imb`, the training split is a long-tailed subset; with `measure_stats`, the manifest's mean and std are
    measured on (a sample of) the training images instead of ImageNet's. `image_size` (the side of the square the
    network sees, default 224) and `eval_resize` (evaluation's shorter-side resize, default image_size * 256/224;
    for small images, `data.image_stats.is_small`, the image size: they are trained without a zoom) are
    recorded in the manifest, with the training images' median size as stored (`native_size`).
    """
    if imb is not None:
        imb, profile = check_imb(imb), check_profile(profile)
    size = check_input_size(image_size, eval_resize)
    out = Path(out) if out is not None else data_root() / f"{Path(os.path.abspath(root)).name}-folder"
    check_writable(out, overwrite)
    check_root(root)
    fractions = _folder_fractions(Path(root), val_per_class, val_fraction, test_fraction)
    tree = scan_tree(Path(root))
    if val_per_class and "val" in tree.splits:
        raise SettingError(f"{Path(root) / 'val'} exists: pass `val_per_class` only for a tree without a val folder")
    splits = _folder_splits(tree, imb=imb, profile=profile, seed=seed, val_per_class=val_per_class, fractions=fractions)
    if verify:
        layout = "ROOT/<class>/*" if tree.flat else "ROOT/{split}/<class>/*"
        for split, files in splits.items():
            verify_images(root, files.paths, f"{split} split", layout.format(split=split))
    counts = splits["train"].counts(len(tree.classes))
    mean, std = _normalisation(Path(root), splits["train"], seed) if measure_stats else (IMAGENET_MEAN, IMAGENET_STD)
    native = measure_size(Path(root), splits["train"].paths, seed=seed)
    if is_small(native) and eval_resize is None:
        eval_resize = size  # evaluation sees the whole image, as the pad-and-crop of small images trains on it
    plan = ListPlan(
        dataset="folder",
        classes=tree.classes,
        lists={split: (files, f"{split}.txt", list_writer(files)) for split, files in splits.items()},
        image_root=Path(root),
        imb=imb if imb is not None else max(counts) / min(counts),
        profile=profile if imb is not None else AS_LISTED,
        seed=seed,
        val_per_class=val_per_class,
        source=SourceInfo(name=Path(os.path.abspath(root)).name, verified=False),
        default_preset="finetune",
        reported_split="test",
        mean=list(mean),
        std=list(std),
        image_size=[INPUT_SIZE[0], size, size],
        eval_resize=eval_resize,
        native_size=native,
    )
    if image_size is None:
        warn_upscaled(native, size, measure_stats)
    warn_absent(splits, tree.classes)
    warn_balance(counts)
    return write_plan(plan, out, overwrite)


def check_input_size(image_size: int | None, eval_resize: int | None) -> int:
    """The side of the square the network sees (`image_size`, default 224); SettingError for a side below 1 or an
    `eval_resize` smaller than it (evaluation center-crops the resized image to that side)."""
    size = INPUT_SIZE[1] if image_size is None else image_size
    if size < 1:
        raise SettingError(f"`image_size` must be at least 1, got {size}")
    if eval_resize is not None and eval_resize < size:
        raise SettingError(
            f"`eval_resize` {eval_resize} is smaller than the image size {size}: evaluation resizes the shorter side "
            "to it, then center-crops to the image size"
        )
    return size


def _folder_fractions(
    root: Path, val_per_class: int, val_fraction: float | None, test_fraction: float | None
) -> tuple[float, float] | None:
    """A flat tree's (val, test) fractions, checked; None for a split tree, which takes none."""
    if is_split_tree(root):
        if val_fraction is not None or test_fraction is not None:
            option = "val_fraction" if val_fraction is not None else "test_fraction"
            raise SettingError(
                f"`{option}` splits a flat tree ROOT/<class>/*; {root} has train/val/test folders, used as they are"
            )
        return None
    if val_per_class:
        raise SettingError("`val_per_class` is for ROOT/{train,test}/<class>/* trees; a flat tree takes `val_fraction`")
    fractions = (
        FLAT_FRACTIONS[0] if val_fraction is None else val_fraction,
        FLAT_FRACTIONS[1] if test_fraction is None else test_fraction,
    )
    check_fractions(*fractions)
    return fractions


def _folder_splits(
    tree: FolderTree,
    *,
    imb: float | None,
    profile: str,
    seed: int,
    val_per_class: int,
    fractions: tuple[float, float] | None,
) -> dict[str, FileList]:
    """train (long-tailed when `imb` is given, less any val images), val and test of a folder tree."""
    given = dict(tree.splits)
    if tree.flat:
        assert fractions is not None  # _folder_fractions gives a flat tree its fractions
        paths, labels = given.pop(FLAT)
        parts = split_by_fractions(np.asarray(labels, dtype=np.int64), tree.classes, *fractions, seed)
        given = {split: _pairs(paths, labels, parts[split]) for split in ("train", "val", "test")}
        given = {split: pairs for split, pairs in given.items() if pairs[0] or split != "val"}
    paths, labels = given["train"]
    label_array = np.asarray(labels, dtype=np.int64)
    # n_max is the smallest class before any val images are held out, as for CIFAR-LT and Fashion-MNIST-LT
    n_max = int(np.bincount(label_array, minlength=len(tree.classes)).min())
    train, val = select_long_tail(
        label_array, tree.classes, n_max=n_max, imb=imb, profile=profile, seed=seed, val_per_class=val_per_class
    )
    splits = {"train": _subset(paths, labels, np.sort(train))}
    if val_per_class:
        splits["val"] = _subset(paths, labels, np.sort(val))
    splits |= {name: from_pairs(*pairs) for name, pairs in given.items() if name != "train"}
    return {name: splits[name] for name in ("train", "val", "test") if name in splits}


def _pairs(paths: list[str], labels: list[int], indices: np.ndarray) -> tuple[list[str], list[int]]:
    """The paths and labels at `indices`."""
    return [paths[i] for i in indices], [labels[i] for i in indices]


def _normalisation(root: Path, train: FileList, seed: int) -> tuple[list[float], list[float]]:
    """Per-channel mean and std measured on (a sample of) the training images, reported on stderr."""
    stats = measure_stats(root, train.paths, seed=seed)
    info(
        f"Measured on {stats.measured} training images (a seeded sample of at most {STATS_SAMPLE}): "
        f"mean {', '.join(f'{m:.4f}' for m in stats.mean)}, std {', '.join(f'{s:.4f}' for s in stats.std)}"
    )
    return stats.mean, stats.std


def _subset(paths: list[str], labels: list[int], indices: np.ndarray) -> FileList:
    """The FileList of the images at `indices`."""
    return from_pairs([paths[i] for i in indices], [labels[i] for i in indices])
