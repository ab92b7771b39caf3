"""A user's image folders: ROOT/{train,val,test}/<class>/* or a flat ROOT/<class>/*; classes from the folder names.

Images are found by extension; a flat tree is split into train, val and test by `split_by_fractions`.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bagmar_cli.data.filelists import check_every_class
from bagmar_cli.data.longtail import shuffled_by_class
from bagmar_cli.errors import DatasetError, SettingError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
SPLITS = ("train", "val", "test")  # train and test are required, val is optional
FLAT = "all"  # the one "split" of a flat tree, before it is divided by fractions


@dataclass(frozen=True)
class FolderTree:
    """What a folder tree holds: class names (sorted, label order) and each split's images and labels."""

    classes: list[str]
    splits: dict[str, tuple[list[str], list[int]]]  # split (or FLAT) -> (paths relative to ROOT, labels)

    @property
    def flat(self) -> bool:
        """Whether the tree is ROOT/<class>/* (one pool of images to split), not ROOT/{train,val,test}/<class>/*."""
        return FLAT in self.splits


def is_split_tree(root: Path) -> bool:
    """Whether ROOT holds a train, val or test folder (the split layout); otherwise it is a flat class tree."""
    return any(_is_dir(Path(root) / split) for split in SPLITS)


def scan_tree(root: Path) -> FolderTree:
    """The images of ROOT/{train,test,val}/<class>/* (split layout) or of ROOT/<class>/* (flat layout).

    Files are taken in name order within each class (recursively, following symbolic links; loops refused).
    """
    root = Path(root)
    if not is_split_tree(root):
        return _scan_flat(root)
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


def _scan_flat(root: Path) -> FolderTree:
    """The images of a flat tree ROOT/<class>/*; DatasetError for a class folder without images."""
    classes = _class_folders(root)
    if not classes:
        raise DatasetError(
            f"{root} has no class folders; `prepare folder` expects ROOT/<class>/* or ROOT/{{train,val,test}}/<class>/*"
        )
    paths, labels = [], []
    for label, name in enumerate(classes):
        images = _images_in(root / name, root, frozenset())
        paths += images
        labels += [label] * len(images)
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(classes)).tolist()
    check_every_class(counts, root, classes)
    return FolderTree(classes, {FLAT: (paths, labels)})


def check_fractions(val_fraction: float, test_fraction: float) -> None:
    """SettingError unless both fractions are in [0, 1), the test one above 0, and they leave room for training."""
    for option, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0 <= value < 1:
            raise SettingError(f"`{option}` must be in [0, 1), got {value:g}")
    if test_fraction == 0:
        raise SettingError("`test_fraction` must be above 0: a flat tree needs a test split to report results on")
    if val_fraction + test_fraction >= 1:
        raise SettingError(f"`val_fraction` + `test_fraction` is {val_fraction + test_fraction:g}; it must be below 1")


def split_by_fractions(
    labels: np.ndarray, classes: list[str], val_fraction: float, test_fraction: float, seed: int
) -> dict[str, np.ndarray]:
    """Sorted indices of train, val and test: each class split by the fractions, a pure function of `seed`.

    A class of n images gives round(n * test_fraction) to test and round(n * val_fraction) to val (halves round
    up), drawn from its seeded permutation in that order; the rest is train. SettingError naming a class left with
    no training image.
    """
    pools = shuffled_by_class(labels, len(classes), seed)
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    for name, pool in zip(classes, pools, strict=True):
        n_test, n_val = _round(len(pool) * test_fraction), _round(len(pool) * val_fraction)
        if n_test + n_val >= len(pool):
            raise SettingError(
                f"class {name!r} has {len(pool)} images: `val_fraction` {val_fraction:g} and `test_fraction` "
                f"{test_fraction:g} leave it no training image; give it more images or use smaller fractions"
            )
        parts["test"].append(pool[:n_test])
        parts["val"].append(pool[n_test : n_test + n_val])
        parts["train"].append(pool[n_test + n_val :])
    return {split: np.sort(np.concatenate(chunks)).astype(np.int64) for split, chunks in parts.items()}


def _round(value: float) -> int:
    """`value` rounded to the nearest whole number, halves up (not Python's round-half-to-even)."""
    return int(np.floor(value + 0.5))


def _class_folders(folder: Path) -> list[str]:
    """The names of the sub-folders of `folder` (links to folders included), sorted."""
    return sorted(entry.name for entry in os.scandir(folder) if _is_dir(Path(entry.path)))


def _scan_split(root: Path, split: str, classes: list[str]) -> tuple[list[str], list[int]]:
    """Relative paths and labels of one split's images; DatasetError for a class folder train/ lacks."""
    found = _class_folders(root / split)
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise DatasetError(f"{root / split / unknown[0]} is a class folder that {root / 'train'} lacks")
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
