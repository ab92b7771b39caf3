"""A restricted unpickler for the CIFAR archives: numpy arrays and plain containers, nothing else.

The CIFAR batches are pickles, and a pickle can call any importable function while it loads.
`restricted_loads` resolves only the globals that numpy array reconstruction needs.
"""

from __future__ import annotations

import codecs
import io
import pickle

import numpy as np

from bagmar_cli.errors import DatasetError

try:  # numpy >= 2 (and 1.26's forward-compatible alias)
    from numpy._core.multiarray import _reconstruct
except ImportError:  # pragma: no cover - numpy < 1.26
    from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]

# (module, name) -> object. Both numpy module spellings occur: numpy 1 pickles name numpy.core,
# numpy 2 pickles name numpy._core. _codecs.encode rebuilds bytes pickled by Python 3 at protocol < 3.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,
}


class RestrictedUnpickler(pickle.Unpickler):
    """An Unpickler whose find_class refuses every global outside `_ALLOWED`."""

    def find_class(self, module: str, name: str) -> object:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise DatasetError(
                f"the pickle asks for global '{module}.{name}'; bagmar's restricted unpickler refuses to load "
                "it (CIFAR batches only need numpy arrays)"
            ) from None


def restricted_loads(data: bytes) -> object:
    """Unpickle `data` with byte-string keys (as the official CIFAR loader does), numpy arrays only."""
    try:
        return RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except DatasetError:
        raise
    except Exception as exc:  # any malformed pickle: EOFError, UnpicklingError, ValueError, ...
        raise DatasetError(f"not a readable pickle ({type(exc).__name__}: {exc})") from exc
