"""Dataset directories whose splits are lists of image files: the large-scale benchmarks and a user's folders.

Only the lists and the manifest are written; the images stay where they are, under the image root.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bagmar_cli import __version__
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
from bagmar_cli.data.filelists import FileList, check_every_class, from_pairs, parse_list, write_list
from bagmar_cli.data.folders import FolderTree, scan_tree
from bagmar_cli.data.longtail import check_imb, check_profile, select_long_tail
from bagmar_cli.data.manifest import FORMAT_VERSION, ListSplitInfo, Manifest, SourceInfo, write_manifest
from bagmar_cli.data.prepare import prepare_dataset
from bagmar_cli.data.registry import dataset_names
from bagmar_cli.data.store import check_writable, data_root, staged_directory
from bagmar_cli.data.verify import verify_images
from bagmar_cli.errors import DatasetError, UsageError
from bagmar_cli.functional.metrics import shot_groups

INPUT_SIZE = [3, 224, 224]  # what the network sees after the evaluation crop; images on disk vary in size
AS_LISTED = "as-listed"  # the manifest's profile when the lists (or folders) are used as they are


def prepare_any(
    dataset: str,
    *,
    imb: float | None = None,
    profile: str = "exp",
    seed: int = 0,
    val_per_class: int = 0,
    source: Path | None = None,
    root: Path | None = None,
    splits: Path | None = None,
    verify: bool = True,
    out: Path | None = None,
    overwrite: bool = False,
) -> Path:
    """`bagmar prepare`: an in-memory dataset, a benchmark from its lists, or a folder tree; options checked."""
    kind = _kind(dataset)
    _check_options(dataset, kind, imb=imb, val_per_class=val_per_class, source=source, root=root, splits=splits)
    if kind == "tensors":
        return prepare_dataset(
            dataset, imb=100.0 if imb is None else imb, profile=profile, seed=seed, val_per_class=val_per_class,
            source=source, out=out, overwrite=overwrite,
        )  # fmt: skip
    assert root is not None  # _check_options refuses a missing --root
    if kind == "benchmark":
        return prepare_benchmark(dataset, root=root, splits_dir=splits, out=out, verify=verify, overwrite=overwrite)
    return prepare_folder(
        root=root, imb=imb, profile=profile, seed=seed, val_per_class=val_per_class, out=out, verify=verify,
        overwrite=overwrite,
    )  # fmt: skip


def _kind(dataset: str) -> str:
    """ "tensors", "benchmark" or "folder"; UsageError with suggestions for an unknown name."""
    if dataset == "folder":
        return "folder"
    if dataset in benchmark_names():
        return "benchmark"
    if dataset in dataset_names():
        return "tensors"
    names = [*dataset_names(), *benchmark_names(), "folder"]
    hint = did_you_mean(dataset, names, n=3, quote=False)
    raise UsageError(f"unknown dataset {dataset!r}{hint}; choose from {', '.join(names)}")


def _check_options(dataset: str, kind: str, **given: object) -> None:
    """UsageError for an option that does not apply to `dataset`, or a missing --root."""
    unused = {
        "tensors": {"root": "--root", "splits": "--splits"},
        "benchmark": {"imb": "--imb", "val_per_class": "--val-per-class", "source": "--source"},
        "folder": {"splits": "--splits", "source": "--source"},
    }[kind]
    for key, flag in unused.items():
        if given[key]:
            raise UsageError(f"{flag} does not apply to {dataset}")
    if kind != "tensors" and given["root"] is None:
        raise UsageError(f"prepare {dataset} needs --root DIR, the folder that holds its images")


@dataclass(frozen=True)
class _Plan:
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
    writers = {split: (lists[split], path.name, _copier(path)) for split, path in paths.items()}
    counts = lists["train"].counts(bench.num_classes)
    plan = _Plan(
        dataset=name,
        classes=_class_names(lists["train"], bench.num_classes),
        lists=writers,
        image_root=Path(root),
        imb=max(counts) / min(counts),
        profile=AS_LISTED,
        seed=0,
        val_per_class=0,
        source=SourceInfo(name=bench.folder, verified=official),
        default_preset=bench.default_preset,
        reported_split=bench.reported_split,
    )
    return _write(plan, out, overwrite)


def prepare_folder(
    *,
    root: Path,
    imb: float | None = None,
    profile: str = "exp",
    seed: int = 0,
    val_per_class: int = 0,
    out: Path | None = None,
    verify: bool = True,
    overwrite: bool = False,
) -> Path:
    """Write a dataset directory for ROOT/{train,val,test}/<class>/*; with `imb`, a long-tailed train subset."""
    if imb is not None:
        imb, profile = check_imb(imb), check_profile(profile)
    out = Path(out) if out is not None else data_root() / f"{Path(os.path.abspath(root)).name}-folder"
    check_writable(out, overwrite)
    _check_root(root)
    tree = scan_tree(Path(root))
    if val_per_class and "val" in tree.splits:
        raise UsageError(f"{Path(root) / 'val'} exists: pass --val-per-class only for a tree without a val folder")
    splits = _folder_splits(tree, imb, profile, seed, val_per_class)
    if verify:
        for split, files in splits.items():
            verify_images(root, files.paths, f"{split} split", f"ROOT/{split}/<class>/*")
    writers = {split: (files, f"{split}.txt", _list_writer(files)) for split, files in splits.items()}
    counts = splits["train"].counts(len(tree.classes))
    plan = _Plan(
        dataset="folder",
        classes=tree.classes,
        lists=writers,
        image_root=Path(root),
        imb=imb if imb is not None else max(counts) / min(counts),
        profile=profile if imb is not None else AS_LISTED,
        seed=seed,
        val_per_class=val_per_class,
        source=SourceInfo(name=Path(os.path.abspath(root)).name, verified=False),
        default_preset="folder",
        reported_split="test",
    )
    _warn_balance(counts)
    return _write(plan, out, overwrite)


def _folder_splits(
    tree: FolderTree, imb: float | None, profile: str, seed: int, val_per_class: int
) -> dict[str, FileList]:
    """train (long-tailed when `imb` is given, less any val images), val and test of a folder tree."""
    paths, labels = tree.splits["train"]
    label_array = np.asarray(labels, dtype=np.int64)
    # n_max is the smallest class before any val images are held out, as for CIFAR-LT and Fashion-MNIST-LT
    n_max = int(np.bincount(label_array, minlength=len(tree.classes)).min())
    train, val = select_long_tail(
        label_array, tree.classes, n_max=n_max, imb=imb, profile=profile, seed=seed, val_per_class=val_per_class
    )
    splits = {"train": _subset(paths, labels, np.sort(train))}
    if val_per_class:
        splits["val"] = _subset(paths, labels, np.sort(val))
    splits |= {name: from_pairs(*pairs) for name, pairs in tree.splits.items() if name != "train"}
    return {name: splits[name] for name in ("train", "val", "test") if name in splits}


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


def _class_names(train: FileList, num_classes: int) -> list[str]:
    """Each class's folder name in the training list (e.g. a WordNet id), or its label when folders disagree."""
    folders: dict[int, set[str]] = {}
    for path, label in zip(train.paths, train.labels.tolist(), strict=True):
        folders.setdefault(label, set()).add(path.rsplit("/", 2)[-2] if "/" in path else str(label))
    names = [next(iter(folders[c])) if len(folders.get(c, ())) == 1 else str(c) for c in range(num_classes)]
    return names if len(set(names)) == num_classes else [str(c) for c in range(num_classes)]


def _copier(source: Path) -> Callable[[Path], None]:
    """A writer that copies an official list byte for byte (so its SHA-256 stays the published file's)."""
    return lambda dest: shutil.copyfile(source, dest)


def _list_writer(files: FileList) -> Callable[[Path], None]:
    """A writer of a list built here."""
    return lambda dest: write_list(dest, files)


def _write(plan: _Plan, out: Path, overwrite: bool) -> Path:
    """The lists and manifest of `plan`, staged and moved to `out`."""
    num_classes = len(plan.classes)
    infos = {
        split: ListSplitInfo(list_file=file, sha256=files.sha256, n=len(files.paths), counts=files.counts(num_classes))
        for split, (files, file, _) in plan.lists.items()
    }
    with staged_directory(out, overwrite) as tmp:
        for _, file, writer in plan.lists.values():
            writer(tmp / file)
        write_manifest(tmp, _manifest(plan, infos))
    _report(out, plan, infos)
    return out


def _manifest(plan: _Plan, infos: dict[str, ListSplitInfo]) -> Manifest:
    """The version-2 manifest of a file-list dataset; the image root is recorded as an absolute path."""
    return Manifest(
        format_version=FORMAT_VERSION,
        dataset=plan.dataset,
        classes=plan.classes,
        image_size=INPUT_SIZE,
        mean=list(IMAGENET_MEAN),
        std=list(IMAGENET_STD),
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
    )


def _report(out: Path, plan: _Plan, infos: dict[str, ListSplitInfo]) -> None:
    """What was found: images and classes per split, the imbalance factor and the shot groups."""
    info(f"Wrote {out} (lists only; images stay under {os.path.abspath(plan.image_root)})")
    for name, split in infos.items():
        present = sum(1 for n in split.counts if n)
        info(f"  {name}: {split.n} images in {present} classes, {max(split.counts)} to {min(split.counts)} per class")
    groups = shot_groups(torch.tensor(infos["train"].counts))
    sizes = ", ".join(f"{int(mask.sum())} {group}" for group, mask in groups.items())
    info(f"  imbalance factor {plan.imb:g}; classes by training images: {sizes}")


def _warn_balance(counts: list[int]) -> None:
    """Warn about a training split that is barely long-tailed."""
    if max(counts) / min(counts) < 2:
        warn(
            f"the training split is barely long-tailed (largest / smallest class = {max(counts) / min(counts):.2g}); "
            "--imb FACTOR draws a long-tailed subset from a balanced tree"
        )
