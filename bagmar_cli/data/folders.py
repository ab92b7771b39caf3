"""A user's image folders, ROOT/{train,val,test}/<class>/*: classes from the folder names, images by extension."""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bagmar_cli.console import warn
from bagmar_cli.data.filelists import check_every_class
from bagmar_cli.errors import DatasetError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
SPLITS = ("train", "val", "test")  # train and test are required, val is optional


@dataclass(frozen=True)
class FolderTree:
    """What a folder tree holds: class names (sorted, label order) and each split's images and labels."""

    classes: list[str]
    splits: dict[str, tuple[list[str], list[int]]]  # split -> (paths relative to ROOT, labels)


def scan_tree(root: Path) -> FolderTree:
    """The images of ROOT/train, ROOT/test and (when present) ROOT/val, one sub-folder per class.

    Files are taken in name order within each class (recursively, following symbolic links; loops refused).
    """
    root = Path(root)
    for required in ("train", "test"):
        if not (root / required).is_dir():
            raise DatasetError(
                f"{root / required} is not a folder; `prepare folder` expects ROOT/train/<class>/*, "
                "ROOT/test/<class>/* and optionally ROOT/val/<class>/*"
            )
    classes = _class_folders(root / "train")
    if not classes:
        raise DatasetError(f"{root / 'train'} has no class folders; expected ROOT/train/<class>/*")
    splits = {split: _scan_split(root, split, classes) for split in SPLITS if (root / split).is_dir()}
    check_every_class(
        np.bincount(np.asarray(splits["train"][1], dtype=np.int64), minlength=len(classes)).tolist(),
        root / "train",
        classes,
    )
    return FolderTree(classes, splits)


def _class_folders(folder: Path) -> list[str]:
    """The names of the sub-folders of `folder` (links to folders included), sorted."""
    return sorted(entry.name for entry in os.scandir(folder) if _is_dir(Path(entry.path)))


def _scan_split(root: Path, split: str, classes: list[str]) -> tuple[list[str], list[int]]:
    """Relative paths and labels of one split's images; DatasetError for a class folder train/ lacks."""
    found = _class_folders(root / split)
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise DatasetError(f"{root / split / unknown[0]} is a class folder that {root / 'train'} lacks")
    absent = [name for name in classes if name not in found]
    if absent and split != "train":
        warn(f"{len(absent)} classes have no {split} folder (e.g. {absent[0]!r}): their {split} accuracy is undefined")
    paths, labels = [], []
    for label, name in enumerate(classes):
        if name in found:
            images = _images_in(root / split / name, root, frozenset())
            paths += images
            labels += [label] * len(images)
    return paths, labels


def _images_in(folder: Path, root: Path, ancestors: frozenset[tuple[int, int]]) -> list[str]:
    """Image files under `folder`, relative to `root` with '/' separators, in name order; refuses link loops."""
    info = _stat(folder)
    key = (info.st_dev, info.st_ino)
    if key in ancestors:
        raise DatasetError(f"{folder} is a symbolic link loop: it leads back into a folder that contains it")
    found = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        path = Path(entry.path)
        if _is_dir(path):
            found += _images_in(path, root, ancestors | {key})
        elif path.suffix.lower() in IMAGE_EXTENSIONS:
            _stat(path)  # a link loop or a broken link named like an image is refused, not skipped
            found.append(_relative(path, root))
    return found


def _is_dir(path: Path) -> bool:
    """Whether `path` is a folder (following links); DatasetError for a link loop, False for a broken link."""
    if os.path.islink(path):
        try:
            os.stat(path)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise DatasetError(f"{path} is a symbolic link loop") from exc
            return False
    return os.path.isdir(path)


def _stat(path: Path) -> os.stat_result:
    """os.stat(path), as a DatasetError naming a link loop or a broken link."""
    try:
        return os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise DatasetError(f"{path} is a symbolic link loop") from exc
        raise DatasetError(f"{path} cannot be read ({exc.strerror}): a broken symbolic link?") from exc


def _relative(path: Path, root: Path) -> str:
    """`path` relative to `root`, '/'-separated; DatasetError for a name the list format cannot hold."""
    relative = path.relative_to(root).as_posix()
    if any(char in relative for char in "\r\n") or relative != relative.strip():
        raise DatasetError(f"{path}: file names with line breaks or surrounding spaces cannot be listed")
    return relative
