"""Write a CIFAR-100-shaped source folder of random images, in the official layout `bagmar prepare` reads.

Real CIFAR is not on the benchmark machines (no internet); speed does not depend on the pixels, so
`benchmarks/gpu_check.sh` prepares `cifar100` from this folder with the real `bagmar prepare cifar100 --source`.
The files are Python-2-style pickles (byte-string keys and strings, `numpy.core` module names) as the official
ones are; their checksums differ from the official files, which `prepare` reports with a warning.

    python benchmarks/fake_cifar.py OUT_DIR   # writes OUT_DIR/cifar-100-python/{train,test,meta}
"""

from __future__ import annotations

import io
import pickle
import struct
import sys
from pathlib import Path

import numpy as np

from bagmar_cli.console import result
from bagmar_cli.data.sources.cifar import CIFAR100, CifarLayout


class _Py2Pickler(pickle._Pickler):  # type: ignore[name-defined]
    """Writes str and bytes as Python 2 strings (BINSTRING), as the cPickle that made the CIFAR files did."""

    dispatch = pickle._Pickler.dispatch.copy()  # type: ignore[attr-defined]

    def _save_py2_string(self, obj: str | bytes) -> None:
        data = obj.encode("latin-1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[str] = _save_py2_string
    dispatch[bytes] = _save_py2_string


def py2_dumps(obj: object) -> bytes:
    buffer = io.BytesIO()
    _Py2Pickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def write_fake_cifar(out: Path, layout: CifarLayout = CIFAR100, seed: int = 0) -> Path:
    """The layout's folder under `out`, random uint8 images, every class with the official image count."""
    rng = np.random.default_rng(seed)
    folder = Path(out) / layout.folder
    folder.mkdir(parents=True, exist_ok=True)
    train_n, test_n = layout.num_classes * layout.train_per_class, layout.num_classes * layout.test_per_class
    per_file = train_n // len(layout.train_files)
    train_labels = rng.permutation(np.arange(train_n) % layout.num_classes)
    for i, name in enumerate(layout.train_files):
        labels = train_labels[i * per_file : (i + 1) * per_file].tolist()
        data = rng.integers(0, 256, (per_file, 3072), dtype=np.uint8)
        (folder / name).write_bytes(py2_dumps({b"data": data, layout.labels_key: labels}))
    test = {b"data": rng.integers(0, 256, (test_n, 3072), dtype=np.uint8)}
    test[layout.labels_key] = (np.arange(test_n) % layout.num_classes).tolist()
    (folder / layout.test_file).write_bytes(py2_dumps(test))
    names = [f"class{c}".encode() for c in range(layout.num_classes)]
    (folder / layout.meta_file).write_bytes(py2_dumps({layout.names_key: names}))
    return folder


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python benchmarks/fake_cifar.py OUT_DIR")
    result(str(write_fake_cifar(Path(sys.argv[1]))))
