"""Device choice, seeding and RNG state capture: what makes a run reproducible and resumable."""

from __future__ import annotations

import random
from typing import Any, cast

import numpy as np
import torch

from bagmar_cli.errors import SettingError


def resolve_device(name: str) -> torch.device:
    """`auto` picks CUDA when present; asking for CUDA on a machine without it is a usage error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise SettingError(f"unknown device {name!r}; expected auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SettingError(f"device {name!r} requested but CUDA is not available on this machine; use `device` cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise SettingError(f"device {name!r} does not exist ({torch.cuda.device_count()} CUDA devices)")
    elif device.type != "cpu":
        raise SettingError(f"unsupported device {name!r}; expected auto, cpu, cuda or cuda:N")
    return device


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def capture_rng() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """RNG states split into tensors and JSON-able metadata, for a checkpoint."""
    np_state = cast(tuple[Any, ...], np.random.get_state(legacy=True))  # (name, keys, pos, has_gauss, cached)
    tensors = {"rng.torch": torch.get_rng_state(), "rng.numpy": torch.from_numpy(np_state[1].astype(np.int64))}
    if torch.cuda.is_available():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = state
    py_version, py_state, py_gauss = random.getstate()
    meta = {"python": [py_version, list(py_state), py_gauss], "numpy": [np_state[0], *map(_plain, np_state[2:])]}
    return tensors, meta


def restore_rng(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Inverse of capture_rng."""
    torch.set_rng_state(tensors["rng.torch"])
    name, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((name, tensors["rng.numpy"].numpy().astype(np.uint32), pos, has_gauss, cached))
    version, state, gauss = meta["python"]
    random.setstate((version, tuple(state), gauss))
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("rng.cuda.")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value
