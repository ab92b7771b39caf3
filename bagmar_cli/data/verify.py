"""Check that every listed image exists under an image root: parallel stat calls, no decoding."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from bagmar_cli.errors import DatasetError

SHOWN = 5  # missing paths named in the error
WORKERS = 32  # stat calls in flight: they wait on the file system (often a network one), not on the CPU


@dataclass
class Problems:
    """What the stat calls found wrong, by kind."""

    missing: list[str] = field(default_factory=list)  # absent, or not a regular file
    loops: list[str] = field(default_factory=list)  # a symbolic link loop on the way
    escaping: list[str] = field(default_factory=list)  # resolves outside the root through a symbolic link


def check_root(root: Path) -> None:
    """DatasetError unless `root`, the folder a dataset's image files are listed under, is a folder."""
    if not Path(root).is_dir():
        raise DatasetError(f"`root` {root} is not a folder")


def verify_images(root: Path, paths: list[str], what: str, layout: str = "") -> None:
    """DatasetError unless every path in `paths` is a regular file inside `root` (links resolved).

    `what` names the list (e.g. "ImageNet_LT_test.txt") and `layout` says where the dataset expects its images.
    """
    root = Path(root)
    check_root(root)
    real_root = os.path.realpath(root)
    check = _checker(str(root), real_root)
    with ThreadPoolExecutor(WORKERS) as pool:
        verdicts = list(pool.map(check, paths, chunksize=256))
    problems = Problems()
    for path, verdict in zip(paths, verdicts, strict=True):
        if verdict is not None:
            getattr(problems, verdict).append(path)
    _raise(problems, root, what, layout)


def _checker(root: str, real_root: str) -> Callable[[str], str | None]:
    """A function path -> None when fine, else "missing", "loops" or "escaping"; caches resolved folders."""

    @lru_cache(maxsize=65536)
    def real_dir(relative_dir: str) -> str:
        return os.path.realpath(os.path.join(root, relative_dir))

    def check(relative: str) -> str | None:
        full = os.path.join(root, relative)
        try:
            info = os.stat(full)
        except OSError as exc:
            return "loops" if exc.errno == errno.ELOOP else "missing"
        if not stat.S_ISREG(info.st_mode):
            return "missing"
        folder, _ = os.path.split(relative)
        real = real_dir(folder)
        if os.path.islink(full):
            real = os.path.dirname(os.path.realpath(full))
        return None if real == real_root or real.startswith(real_root + os.sep) else "escaping"

    return check


def _raise(problems: Problems, root: Path, what: str, layout: str) -> None:
    """One DatasetError line for the first kind of problem found, with the first few paths."""
    if problems.loops:
        raise DatasetError(f"{what}: {_some(problems.loops)} under {root} lead into a symbolic link loop")
    if problems.escaping:
        raise DatasetError(
            f"{what}: {_some(problems.escaping)} under {root} resolve outside it through symbolic links; "
            "pass the folder the links point into as `root`"
        )
    if problems.missing:
        hint = f"; expected layout: {layout}" if layout else ""
        raise DatasetError(f"{what}: {_some(problems.missing)} missing under {root}{hint}; `no_verify` skips the check")


def _some(paths: list[str]) -> str:
    """`N images (a, b, c, ...)` naming the first SHOWN paths."""
    shown = ", ".join(paths[:SHOWN]) + (", ..." if len(paths) > SHOWN else "")
    return f"{len(paths)} image{'s' if len(paths) != 1 else ''} ({shown})"
