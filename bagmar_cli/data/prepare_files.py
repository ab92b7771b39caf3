"""Dataset directories whose splits are lists of image files: the large-scale benchmarks and a user's folders.

Only the lists and the manifest are written; the images stay where they are, under the image root.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from bagmar_cli.choices import did_you_mean
from bagmar_cli.console import info, note, warn
from bagmar_cli.data.benchmarks import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Benchmark,
    benchmark_names,
    get_benchmark,
    locate_lists,
)
from bagmar_cli.data.filelists import FileList, check_every_class, from_pairs, parse_list
from bagmar_cli.data.folders import FLAT, FolderTree, check_fractions, is_split_tree, scan_tree, split_by_fractions
from bagmar_cli.data.image_stats import STATS_SAMPLE, is_small, measure_size, measure_stats
from bagmar_cli.data.list_dataset import (
    INPUT_SIZE,
    ListPlan,
    class_names,
    copier,
    list_writer,
    warn_absent,
    warn_balance,
    warn_upscaled,
    write_plan,
)
from bagmar_cli.data.longtail import check_imb, check_profile, select_long_tail
from bagmar_cli.data.manifest import SourceInfo
from bagmar_cli.data.prepare import prepare_dataset
from bagmar_cli.data.registry import dataset_names
from bagmar_cli.data.store import check_writable, data_root
from bagmar_cli.data.verify import verify_images
from bagmar_cli.errors import DatasetError, SettingError

AS_LISTED = "as-listed"  # the manifest's profile when the lists (or folders) are used as they are
FLAT_FRACTIONS = (0.1, 0.2)  # a flat tree's default val and test fractions


def prepare_any(
    dataset: str,
    *,
    imb: float | None = None,
    profile: str = "exp",
    seed: int = 0,
    val_per_class: int = 0,
    subset: str = "bagmar",
    val_fraction: float | None = None,
    test_fraction: float | None = None,
    measure_stats: bool = False,
    source: Path | None = None,
    root: Path | None = None,
    splits: Path | None = None,
    image_size: int | None = None,
    eval_resize: int | None = None,
    verify: bool = True,
    out: Path | None = None,
    overwrite: bool = False,
) -> Path:
    """`bagmar prepare`: an in-memory dataset, a benchmark from its lists, or a folder tree; options checked."""
    kind = _kind(dataset)
    _check_options(
        dataset, kind, imb=imb, val_per_class=val_per_class, source=source, root=root, splits=splits,
        subset=subset != "bagmar",
        val_fraction=val_fraction is not None, test_fraction=test_fraction is not None, measure_stats=measure_stats,
        image_size=image_size is not None, eval_resize=eval_resize is not None,
    )  # fmt: skip
    if kind == "tensors":
        return prepare_dataset(
            dataset, imb=100.0 if imb is None else imb, profile=profile, seed=seed, val_per_class=val_per_class,
            subset=subset, source=source, out=out, overwrite=overwrite,
        )  # fmt: skip
    assert root is not None  # _check_options refuses a missing --root
    if kind == "benchmark":
        return prepare_benchmark(dataset, root=root, splits_dir=splits, out=out, verify=verify, overwrite=overwrite)
    return prepare_folder(
        root=root, imb=imb, profile=profile, seed=seed, val_per_class=val_per_class, val_fraction=val_fraction,
        test_fraction=test_fraction, measure_stats=measure_stats, image_size=image_size, eval_resize=eval_resize,
        out=out, verify=verify, overwrite=overwrite,
    )  # fmt: skip


def _kind(dataset: str) -> str:
    """ "tensors", "benchmark" or "folder"; SettingError with suggestions for an unknown name."""
    if dataset == "folder":
        return "folder"
    if dataset in benchmark_names():
        return "benchmark"
    if dataset in dataset_names():
        return "tensors"
    names = [*dataset_names(), *benchmark_names(), "folder"]
    hint = did_you_mean(dataset, names, n=3, quote=False)
    raise SettingError(f"unknown dataset {dataset!r}{hint}; choose from {', '.join(names)}")


def _check_options(dataset: str, kind: str, **given: object) -> None:
    """SettingError for an option that does not apply to `dataset`, or a missing --root."""
    files_only = {"val_fraction": "--val-fraction", "test_fraction": "--test-fraction"}
    files_only |= {"image_size": "--image-size", "eval_resize": "--eval-resize"}
    unused = {
        "tensors": {"root": "--root", "splits": "--splits", "measure_stats": "--measure-stats", **files_only},
        "benchmark": {
            "imb": "--imb",
            "val_per_class": "--val-per-class",
            "source": "--source",
            "subset": "--subset",
            **files_only,
        },
        "folder": {"splits": "--splits", "source": "--source", "subset": "--subset"},
    }[kind]
    for key, flag in unused.items():
        if given[key]:
            raise SettingError(f"{flag} does not apply to {dataset}")
    if kind != "tensors" and given["root"] is None:
        raise SettingError(f"prepare {dataset} needs --root DIR, the folder that holds its images")


def prepare_benchmark(
    name: str,
    *,
    root: Path,
    splits_dir: Path | None = None,
    out: Path | None = None,
    verify: bool = True,
    overwrite: bool = False,
) -> Path:
    """Write the dataset directory of benchmark `name` from its official lists, images under `root`."""
    bench = get_benchmark(name)
    out = Path(out) if out is not None else data_root() / name
    check_writable(out, overwrite)
    _check_root(root)
    paths = locate_lists(bench, splits_dir)
    lists = {split: parse_list(path, bench.num_classes) for split, path in paths.items()}
    check_every_class(lists["train"].counts(bench.num_classes), paths["train"])
    official = _check_sizes(bench, lists)
    if verify:
        for split, files in lists.items():
            verify_images(root, files.paths, bench.lists[split], bench.layout[split])
    if bench.reported_split != "test":
        note(f"{bench.title} has no test split: {bench.reported_split} is the split its results are reported on")
    writers = {split: (lists[split], path.name, copier(path)) for split, path in paths.items()}
    counts = lists["train"].counts(bench.num_classes)
    plan = ListPlan(
        dataset=name,
        classes=class_names(lists["train"], bench.num_classes),
        lists=writers,
        image_root=Path(root),
        imb=max(counts) / min(counts),
        profile=AS_LISTED,
        seed=0,
        val_per_class=0,
        source=SourceInfo(name=bench.folder, verified=official),
        default_preset=bench.default_preset,
        reported_split=bench.reported_split,
        mean=list(IMAGENET_MEAN),
        std=list(IMAGENET_STD),
    )
    return write_plan(plan, out, overwrite)


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
    _check_root(root)
    fractions = _folder_fractions(Path(root), val_per_class, val_fraction, test_fraction)
    tree = scan_tree(Path(root))
    if val_per_class and "val" in tree.splits:
        raise SettingError(f"{Path(root) / 'val'} exists: pass --val-per-class only for a tree without a val folder")
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
        default_preset="folder",
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
        raise SettingError(f"--image-size must be at least 1, got {size}")
    if eval_resize is not None and eval_resize < size:
        raise SettingError(
            f"--eval-resize {eval_resize} is smaller than the image size {size}: evaluation resizes the shorter side "
            "to it, then center-crops to the image size"
        )
    return size


def _folder_fractions(
    root: Path, val_per_class: int, val_fraction: float | None, test_fraction: float | None
) -> tuple[float, float] | None:
    """A flat tree's (val, test) fractions, checked; None for a split tree, which takes none."""
    if is_split_tree(root):
        if val_fraction is not None or test_fraction is not None:
            flag = "--val-fraction" if val_fraction is not None else "--test-fraction"
            raise SettingError(
                f"{flag} splits a flat tree ROOT/<class>/*; {root} has train/val/test folders, used as they are"
            )
        return None
    if val_per_class:
        raise SettingError("--val-per-class is for ROOT/{train,test}/<class>/* trees; a flat tree takes --val-fraction")
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


def _check_root(root: Path) -> None:
    """DatasetError unless --root is a folder."""
    if not Path(root).is_dir():
        raise DatasetError(f"--root {root} is not a folder")


def _check_sizes(bench: Benchmark, lists: dict[str, FileList]) -> bool:
    """Whether every list has its official size; warns for each that does not."""
    official = True
    for split, files in lists.items():
        if len(files.paths) != bench.sizes[split]:
            warn(f"{bench.lists[split]} lists {len(files.paths)} images; the official list has {bench.sizes[split]}")
            official = False
    return official
