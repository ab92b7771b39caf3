"""Downloads into $BAGMAR_DATA_DIR/downloads: progress on stderr, MD5 check, never a half-written file."""

from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path
from typing import BinaryIO
from urllib.error import HTTPError
from urllib.request import urlopen

from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from bagmar_cli.console import err, info
from bagmar_cli.data.store.paths import data_root
from bagmar_cli.errors import DownloadError

CONNECT_TIMEOUT = 5.0  # seconds; offline machines fail at once instead of hanging
CHUNK = 1 << 20
SOURCE_HINT = "download it on a machine with internet access and pass its path as `source`"


@dataclass(frozen=True)
class Resource:
    """A file to download: its name in downloads/, where it lives, and its published MD5 (None: none published)."""

    filename: str
    url: str
    md5: str | None


def downloads_dir() -> Path:
    """Where downloaded archives are kept and looked for: $BAGMAR_DATA_DIR/downloads."""
    return data_root() / "downloads"


def md5_bytes(data: bytes) -> str:
    """Hex MD5 of `data` (a checksum, not security)."""
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def file_md5(path: Path) -> str:
    """Hex MD5 of a file, read in chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(resource: Resource, hint: str = SOURCE_HINT) -> Path:
    """The resource's file in downloads/, downloading it first when it is not there yet."""
    path = downloads_dir() / resource.filename
    if not path.is_file():
        download(resource.url, path, resource.md5, hint)
    return path


def download(url: str, dest: Path, md5: str | None, hint: str = SOURCE_HINT) -> None:
    """Download `url` to `dest` through a temporary file, renamed into place once its MD5 is `md5` (when given).

    `hint` ends a failure's message: what to do instead.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.part-{secrets.token_hex(4)}")
    info(f"Downloading {url}")
    try:
        with urlopen(url, timeout=CONNECT_TIMEOUT) as response, open(tmp, "wb") as f:
            digest = _copy_with_progress(response, f, int(response.headers.get("Content-Length") or 0), dest.name)
        if md5 is not None and digest != md5:
            raise DownloadError(f"{url} arrived with MD5 {digest}, expected {md5}; try again, or {hint}")
        os.replace(tmp, dest)
    except (OSError, HTTPException, ValueError) as exc:  # URLError and timeouts are OSErrors
        raise DownloadError(f"could not download {url} ({_reason(exc)}); {hint}") from exc
    finally:
        tmp.unlink(missing_ok=True)


def _reason(exc: Exception) -> object:
    """What went wrong, in the words of the exception: "HTTP 404 Not Found", "timed out", ..."""
    if isinstance(exc, HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    return getattr(exc, "reason", exc)


def _copy_with_progress(response: BinaryIO, f: BinaryIO, total: int, label: str) -> str:
    """Copy the response to `f` with a progress bar on stderr; return the MD5 of what was copied."""
    digest = hashlib.md5(usedforsecurity=False)
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, console=err, transient=True) as progress:
        task = progress.add_task(label, total=total or None)
        while chunk := response.read(CHUNK):
            f.write(chunk)
            digest.update(chunk)
            progress.advance(task, len(chunk))
    return digest.hexdigest()
