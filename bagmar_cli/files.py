"""Writing files safely: atomic replacement that keeps a file's mode, respects write protection and the umask."""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path

from bagmar_cli.errors import WriteError


def atomic_write(path: Path, data: bytes) -> None:
    """Write bytes to a temporary sibling, fsync and rename over `path`; the old file survives any failure.

    A new file gets the mode the umask gives (0644 under the usual 022), a replaced file keeps its mode, and a
    write-protected file (no owner write bit) is refused. An OSError is raised as a WriteError naming `path`.
    """
    path = Path(path)
    mode = _mode_for(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise WriteError.of(exc, path) from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise WriteError.of(exc, path) from exc
        raise


def check_writable(path: Path) -> None:
    """WriteError when `path` exists and is write-protected (its owner write bit is off, or we may not write it)."""
    _mode_for(Path(path))


def new_file_mode() -> int:
    """The mode a new file gets under the current umask (0o666 minus the umask)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def _mode_for(path: Path) -> int:
    """The mode to give `path`: its own when it exists (refused when write-protected), else the umask's."""
    try:
        info = path.stat()
    except OSError:
        return new_file_mode()
    if stat.S_ISREG(info.st_mode) and (not info.st_mode & stat.S_IWUSR or not os.access(path, os.W_OK)):
        raise WriteError(errno.EACCES, f"write-protected file (mode {stat.S_IMODE(info.st_mode):04o})", str(path))
    return stat.S_IMODE(info.st_mode)
