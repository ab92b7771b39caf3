"""The restricted unpickler reads CIFAR-style pickles and refuses everything that could run code."""

import builtins
import os
import pickle
import subprocess

import numpy as np
import pytest

from bagmar_cli.data.unpickle import restricted_loads
from bagmar_cli.errors import DatasetError


class Evil:
    """Unpickling this would call `func(*args)`."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@pytest.mark.parametrize("protocol", [0, 2, 4])
def test_reads_a_cifar_style_batch(protocol):
    batch = {b"data": np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3072), b"labels": [3, 7], b"name": b"x"}
    loaded = restricted_loads(pickle.dumps(batch, protocol=protocol))
    assert np.array_equal(loaded[b"data"], batch[b"data"]) and loaded[b"data"].dtype == np.uint8
    assert loaded[b"labels"] == [3, 7] and loaded[b"name"] == b"x"


def _payloads(marker):
    """Pickles that would create `marker` if unpickled without restriction."""
    yield b"cos\nsystem\n(V touch " + str(marker).encode() + b"\ntR.", "os.system"
    yield pickle.dumps(Evil(os.system, f"touch {marker}"), protocol=4), "system"  # posix.system on Linux
    yield pickle.dumps(Evil(builtins.eval, f"open({str(marker)!r}, 'w')"), protocol=4), "builtins.eval"
    yield pickle.dumps(Evil(subprocess.call, ["touch", str(marker)]), protocol=4), "subprocess.call"
    nested = {b"data": np.zeros(3, np.uint8), b"labels": [Evil(builtins.exec, f"open({str(marker)!r}, 'w')")]}
    yield pickle.dumps(nested, protocol=2), "exec"  # protocol 2 names it __builtin__.exec


@pytest.mark.parametrize("case", range(5))
def test_refuses_globals_that_run_code(tmp_path, case):
    marker = tmp_path / "pwned"
    payload, global_name = list(_payloads(marker))[case]
    with pytest.raises(DatasetError, match="refuses to load") as raised:
        restricted_loads(payload)
    assert global_name in str(raised.value)
    assert not marker.exists()


def test_garbage_is_a_dataset_error():
    with pytest.raises(DatasetError, match="not a readable pickle"):
        restricted_loads(b"\x80\x02}q\x00(X\x01")
