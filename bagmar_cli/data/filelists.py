"""Split lists, one `relative/path label` per line: the format of the ImageNet-LT, iNaturalist18, Places-LT lists."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from bagmar_cli.errors import DatasetError


@dataclass(frozen=True)
class FileList:
    """A parsed split list: image paths relative to an image root, their labels, and the list file's SHA-256."""

    paths: list[str]
    labels: np.ndarray  # int64, one per path
    sha256: str  # of the list file's bytes, so that two people can tell they used the same split

    def counts(self, num_classes: int) -> list[int]:
        """Images per class, in label order."""
        counts: list[int] = np.bincount(self.labels, minlength=num_classes).tolist()
        return counts

    def to_text(self) -> str:
        """The list in its file format (the same bytes `write_list` writes)."""
        return "".join(f"{path} {label}\n" for path, label in zip(self.paths, self.labels.tolist(), strict=True))


def parse_list(path: Path, num_classes: int) -> FileList:
    """Read and check a split list; DatasetError naming the file and line of the first bad line."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise DatasetError(f"cannot read split list {path}: {exc.strerror or exc}") from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path} is not a text file (not UTF-8 at byte {exc.start})") from exc
    paths, labels = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        relative, label = _parse_line(line, num_classes, f"{path}:{number}")
        paths.append(relative)
        labels.append(label)
    return FileList(paths, np.asarray(labels, dtype=np.int64), hashlib.sha256(data).hexdigest())


def _parse_line(line: str, num_classes: int, where: str) -> tuple[str, int]:
    """The path and label of one line (`where` is `file:line` for errors)."""
    fields = line.strip().rsplit(maxsplit=1)
    if len(fields) != 2:
        raise DatasetError(f"{where}: expected `relative/path label`, got {line.strip()!r}")
    relative, label_text = fields
    try:
        label = int(label_text)
    except ValueError:
        raise DatasetError(f"{where}: label {label_text!r} is not a whole number") from None
    if not 0 <= label < num_classes:
        raise DatasetError(f"{where}: label {label} is outside [0, {num_classes})")
    check_relative(relative, where)
    return relative, label


def check_relative(relative: str, where: str) -> None:
    """DatasetError unless `relative` is a relative path that stays inside the image root."""
    if not relative.startswith("/") and not any(mark in relative for mark in ("..", "\\", ":")):
        return  # the common case, decided without building a path object
    parts = PurePosixPath(relative.replace("\\", "/")).parts
    if relative.startswith(("/", "\\")) or (parts and ":" in parts[0]):
        raise DatasetError(f"{where}: {relative!r} is an absolute path; list paths must be relative to `root`")
    if ".." in parts:
        raise DatasetError(f"{where}: {relative!r} contains '..'; list paths must stay inside `root`")


def check_every_class(counts: list[int], path: Path, classes: list[str] | None = None) -> None:
    """DatasetError when a class has no image in the (training) list at `path`."""
    empty = [c for c, n in enumerate(counts) if n == 0]
    if empty:
        name = f" ({classes[empty[0]]!r})" if classes else ""
        more = f" and {len(empty) - 1} more" if len(empty) > 1 else ""
        raise DatasetError(f"{path}: class {empty[0]}{name}{more} has no training image; every class needs one")


def write_list(path: Path, files: FileList) -> None:
    """Write `files` in the split-list format."""
    Path(path).write_text(files.to_text(), encoding="utf-8")


def from_pairs(paths: list[str], labels: list[int] | np.ndarray) -> FileList:
    """A FileList built in memory (e.g. from a folder tree), with the SHA-256 of the bytes it writes."""
    listed = FileList(list(paths), np.asarray(labels, dtype=np.int64), "")
    digest = hashlib.sha256(listed.to_text().encode("utf-8")).hexdigest()
    return FileList(listed.paths, listed.labels, digest)
