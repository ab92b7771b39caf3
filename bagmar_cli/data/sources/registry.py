"""The one registry of data sources: `@register_source` adds a source by name, `get_source` looks it up.

A source declares its kind (TENSORS: read whole into memory and written as uint8 tensor files; FILES: image files
listed where they are, decoded while training), the `bagmar prepare` options it accepts, and its prepare step.
`prepare_source` is all `bagmar prepare` calls: it checks the options against the source and runs its step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from bagmar_cli.choices import did_you_mean
from bagmar_cli.data.sources.options import PrepareOptions, check_options
from bagmar_cli.errors import SettingError

if TYPE_CHECKING:
    from bagmar_cli.data.sources.tensors import DatasetSpec

Kind = Literal["tensors", "files"]
TENSORS: Kind = "tensors"  # images held in memory and written as uint8 tensor files (cifar, digits, ...)
FILES: Kind = "files"  # image files listed in place under `root` (the benchmarks, a user's folders)


@dataclass(frozen=True)
class Source:
    """A data source `bagmar prepare` writes a dataset directory from."""

    name: str
    kind: Kind
    accepts: frozenset[str]  # the source-specific options it takes (options.SPECIFIC)
    prepare: Callable[[PrepareOptions], Path]  # writes the dataset directory, returns its path
    spec: DatasetSpec | None = None  # TENSORS: what training needs to know about the dataset

    @property
    def needs_root(self) -> bool:
        """Whether the source cannot be prepared without `root`: image files are listed where they lie."""
        return self.kind == FILES


_SOURCES: dict[str, Source] = {}


def register_source(name: str) -> Callable[[Callable[[], Source]], Callable[[], Source]]:
    """Decorator: register the source that the decorated function builds under `name`."""

    def decorator(build: Callable[[], Source]) -> Callable[[], Source]:
        source = build()
        if source.name != name or name in _SOURCES:
            raise ValueError(f"source {name!r} is registered twice or under another name ({source.name!r})")
        _SOURCES[name] = source
        return build

    return decorator


def source_names() -> list[str]:
    """Every registered source: the in-memory datasets, then the image-file sources, each sorted by name."""
    return sorted(_SOURCES, key=lambda name: (_SOURCES[name].kind != TENSORS, name))


def get_source(name: str) -> Source:
    """The source registered under `name`; SettingError with suggestions when there is none."""
    if name in _SOURCES:
        return _SOURCES[name]
    raise SettingError(_unknown("dataset", name, source_names()))


def prepare_source(name: str, options: PrepareOptions) -> Path:
    """`bagmar prepare NAME`: the options checked against the source, then its prepare step; the directory written."""
    source = get_source(name)
    check_options(name, source.accepts, source.needs_root, options)
    return source.prepare(options)


def dataset_names() -> list[str]:
    """The sources held in memory as tensors (the datasets with a DatasetSpec), sorted."""
    return sorted(name for name, source in _SOURCES.items() if source.kind == TENSORS)


def get_dataset(name: str) -> DatasetSpec:
    """The spec of the in-memory dataset `name`; SettingError with suggestions when there is none."""
    source = _SOURCES.get(name)
    if source is None or source.spec is None:
        raise SettingError(_unknown("dataset", name, dataset_names()))
    return source.spec


def _unknown(what: str, name: str, names: list[str]) -> str:
    """The message for an unknown name: the close ones, then every choice."""
    hint = did_you_mean(name, names, n=3, quote=False)
    return f"unknown {what} {name!r}{hint}; choose from {', '.join(names)}"
