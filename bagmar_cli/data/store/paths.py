"""Where prepared datasets live on disk: $BAGMAR_DATA_DIR (or ./data) and the default directory of each."""

from __future__ import annotations

import os
from pathlib import Path

DATA_DIR_ENV = "BAGMAR_DATA_DIR"


def data_root() -> Path:
    """$BAGMAR_DATA_DIR, or ./data: the parent of prepared datasets and of `downloads/`."""
    return Path(os.environ.get(DATA_DIR_ENV) or "data")


def default_data_dir(name: str, imb: float, profile: str = "exp") -> Path:
    """Where `prepare_dataset` writes by default, e.g. data/cifar100-lt-imb100 or data/cifar10-lt-imb10-step."""
    suffix = "" if profile == "exp" else f"-{profile}"
    return data_root() / f"{name}-lt-imb{imb:g}{suffix}"
