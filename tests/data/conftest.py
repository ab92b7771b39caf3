"""Fixtures for the dataset tests: CIFAR archives and IDX files generated in the official layouts.

Generated images are zeros except for their first four bytes, which hold the image's index in its
split (little-endian uint32), so that tests can tell which source images a split took.
"""

from __future__ import annotations

import gzip
import io
import pickle
import struct
import tarfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from bagmar_cli.data.sources.cifar import CIFAR10, CIFAR100, CifarLayout


def indexed_images(n: int, row_bytes: int) -> np.ndarray:
    """(n, row_bytes) uint8 zeros whose first four bytes encode the row index."""
    data = np.zeros((n, row_bytes), dtype=np.uint8)
    data[:, :4] = np.arange(n, dtype="<u4").view(np.uint8).reshape(n, 4)
    return data


def image_ids(images) -> np.ndarray:
    """The source indices encoded by `indexed_images`, from (N, C, H, W) images (numpy or torch)."""
    flat = np.asarray(images).reshape(len(images), -1)[:, :4]
    return np.ascontiguousarray(flat).view("<u4").ravel()


class _Py2Pickler(pickle._Pickler):
    """Writes str and bytes as Python 2 strings (BINSTRING), as the cPickle that made the CIFAR files did."""

    dispatch = pickle._Pickler.dispatch.copy()

    def _save_py2_string(self, obj: str | bytes) -> None:
        data = obj.encode("latin-1") if isinstance(obj, str) else obj
        size = len(data)
        short = size < 256
        self.write(
            pickle.SHORT_BINSTRING + bytes([size]) + data
            if short
            else pickle.BINSTRING + struct.pack("<i", size) + data
        )
        self.memoize(obj)

    dispatch[str] = _save_py2_string
    dispatch[bytes] = _save_py2_string


def py2_dumps(obj: object) -> bytes:
    """A protocol-2 pickle like the official CIFAR ones: Python 2 strings, numpy.core module names."""
    buffer = io.BytesIO()
    _Py2Pickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def cifar_members(layout: CifarLayout, *, row_bytes: int = 3072) -> dict[str, bytes]:
    """The layout's files as Python-2-style pickles of dicts with byte-string keys, as the official ones are."""
    train_n = layout.num_classes * layout.train_per_class
    per_file = train_n // len(layout.train_files)
    train = indexed_images(train_n, row_bytes)
    members = {}
    for i, name in enumerate(layout.train_files):
        rows = slice(i * per_file, (i + 1) * per_file)
        labels = (np.arange(train_n)[rows] % layout.num_classes).tolist()
        members[name] = py2_dumps({b"data": train[rows], layout.labels_key: labels})
    test_n = layout.num_classes * layout.test_per_class
    test_labels = (np.arange(test_n) % layout.num_classes).tolist()
    test = {b"data": indexed_images(test_n, row_bytes), layout.labels_key: test_labels}
    members[layout.test_file] = py2_dumps(test)
    names = [f"class{c}".encode() for c in range(layout.num_classes)]
    members[layout.meta_file] = py2_dumps({layout.names_key: names})
    return members


def write_tar(path: Path, members: dict[str, bytes]) -> Path:
    """A .tar.gz holding `members` (name -> bytes), compressed fast."""
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        for name, data in members.items():
            member = tarfile.TarInfo(name)
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
    return path


def write_cifar_archive(path: Path, layout: CifarLayout, **kwargs) -> Path:
    """A generated archive in the official layout (valid structure, not the official checksums)."""
    members = cifar_members(layout, **kwargs)
    return write_tar(path, {f"{layout.folder}/{name}": data for name, data in members.items()})


def write_idx(path: Path, array: np.ndarray, magic: int, *, gz: bool = False) -> Path:
    """An IDX file of uint8 `array` under `magic`, gzipped when `gz`."""
    payload = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    path.write_bytes(gzip.compress(payload, compresslevel=1) if gz else payload)
    return path


@pytest.fixture(scope="session")
def cifar10_archive(tmp_path_factory) -> Path:
    return write_cifar_archive(tmp_path_factory.mktemp("cifar10") / CIFAR10.archive.filename, CIFAR10)


@pytest.fixture(scope="session")
def cifar100_archive(tmp_path_factory) -> Path:
    return write_cifar_archive(tmp_path_factory.mktemp("cifar100") / CIFAR100.archive.filename, CIFAR100)


@pytest.fixture(scope="session")
def helpers() -> Callable:
    """The generators above, for tests (test modules cannot import conftest under importlib mode)."""

    class Helpers:
        pass

    for fn in (indexed_images, image_ids, py2_dumps, cifar_members, write_tar, write_cifar_archive, write_idx):
        setattr(Helpers, fn.__name__, staticmethod(fn))
    return Helpers
