"""Writing a dataset directory safely: staged beside its place, published by a rename, replacing only bagmar's own.

Both kinds of dataset (tensor files, image-file lists) are written through `staged_directory`; `check_writable`
refuses an output that exists unless `overwrite` is given and bagmar wrote everything in it.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bagmar_cli.data.manifest import MANIFEST_NAME, ListSplitInfo, load_manifest
from bagmar_cli.errors import DatasetError, SettingError, WriteError


@contextmanager
def staged_directory(out: Path, overwrite: bool) -> Iterator[Path]:
    """A fresh sibling of `out` to write into, moved to `out` when the block succeeds and removed if it fails.

    An OSError (full disk, read-only place) is raised as a WriteError naming `out`.
    """
    out = Path(os.path.abspath(out))  # "." and ".." have no name to make a sibling's from
    tmp = out.with_name(f".{out.name}.tmp-{secrets.token_hex(4)}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
    except OSError as exc:
        raise WriteError.of(exc, out) from exc
    try:
        yield tmp
        _publish(tmp, out, overwrite)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError):
            raise WriteError.of(exc, out) from exc
        raise


def check_writable(out: Path, overwrite: bool) -> None:
    """Refuse an `out` that exists, unless `overwrite` and it is provably a bagmar dataset (nothing else in it).

    A file standing at `out` is a usage error (exit 2, a setting at odds with the disk); the rest are DatasetErrors.
    """
    if not out.exists():
        return
    if not out.is_dir():
        raise SettingError(f"{out} exists and is not a directory; choose another output directory")
    if not overwrite:
        raise DatasetError(f"{out} already exists; pass `overwrite` to replace it, or choose another output")
    if any(out.iterdir()):  # `overwrite` deletes what it replaces: only what bagmar wrote there
        in_the_way = _not_written_by_bagmar(out)
        if in_the_way:
            shown = ", ".join(str(out / name) for name in in_the_way[:5])
            more = f" and {len(in_the_way) - 5} more" if len(in_the_way) > 5 else ""
            raise DatasetError(
                f"{out} holds files bagmar did not write ({shown}{more}); `overwrite` replaces only a dataset "
                "directory holding nothing else: move them, or choose another output directory"
            )


def _not_written_by_bagmar(out: Path) -> list[str]:
    """Names in dataset directory `out` that are not its manifest or the split files that manifest lists."""
    if not (out / MANIFEST_NAME).is_file():
        raise DatasetError(
            f"{out} is not a dataset directory (no {MANIFEST_NAME}); `overwrite` replaces only "
            "those: choose another output directory"
        )
    try:
        manifest = load_manifest(out)
    except DatasetError as exc:
        raise DatasetError(f"`overwrite` replaces only a bagmar dataset directory: {exc}") from None
    ours = {MANIFEST_NAME} | {
        split.list_file if isinstance(split, ListSplitInfo) else split.file for split in manifest.splits.values()
    }
    entries = sorted(out.iterdir(), key=lambda p: p.name)
    return [p.name for p in entries if p.name not in ours or p.is_symlink() or not p.is_file()]


def _publish(tmp: Path, out: Path, overwrite: bool) -> None:
    """Rename `tmp` to `out`; an existing `out` is moved aside first and deleted after."""
    check_writable(out, overwrite)
    if not out.exists():
        tmp.rename(out)
        return
    old = out.with_name(f".{out.name}.old-{secrets.token_hex(4)}")
    out.rename(old)
    try:
        tmp.rename(out)
    except OSError:
        old.rename(out)
        raise
    shutil.rmtree(old, ignore_errors=True)
