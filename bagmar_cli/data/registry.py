"""The dataset registry: `@register_dataset` adds a spec by name, `get_dataset` looks it up."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from bagmar_cli.choices import did_you_mean
from bagmar_cli.data.manifest import SourceInfo
from bagmar_cli.errors import SettingError


class SourceData(NamedTuple):
    """A dataset as its source holds it: uint8 (N, C, H, W) images and int64 labels, train and test."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    classes: list[str]
    source: SourceInfo


@dataclass(frozen=True)
class DatasetSpec:
    """What `prepare_dataset` needs to know about a dataset, and how to read its source."""

    name: str
    num_classes: int
    n_max: int | None  # images of the largest class; None: the smallest class count in the pool
    image_size: tuple[int, int, int]  # (C, H, W)
    mean: tuple[float, ...]  # per channel, for images scaled to [0, 1]
    std: tuple[float, ...]
    default_preset: str
    load_source: Callable[[Path | None], SourceData]  # source path (archive or folder) or None: find it


_DATASETS: dict[str, DatasetSpec] = {}


def register_dataset(name: str) -> Callable[[Callable[[], DatasetSpec]], Callable[[], DatasetSpec]]:
    """Decorator: register the spec that the decorated function builds under `name`."""

    def decorator(build: Callable[[], DatasetSpec]) -> Callable[[], DatasetSpec]:
        spec = build()
        if spec.name != name or name in _DATASETS:
            raise ValueError(f"dataset {name!r} is registered twice or under another name ({spec.name!r})")
        _DATASETS[name] = spec
        return build

    return decorator


def dataset_names() -> list[str]:
    """The registered dataset names, sorted."""
    return sorted(_DATASETS)


def get_dataset(name: str) -> DatasetSpec:
    """The spec registered under `name`; SettingError with suggestions when there is none."""
    if name in _DATASETS:
        return _DATASETS[name]
    hint = did_you_mean(name, dataset_names(), n=3, quote=False)
    raise SettingError(f"unknown dataset {name!r}{hint}; choose from {', '.join(dataset_names())}")
