"""The dataset a run reads: its directory from the settings, and the settings bound to what its manifest says."""

from __future__ import annotations

from pathlib import Path

from bagmar_cli.data import Manifest, default_data_dir, get_dataset, load_manifest
from bagmar_cli.data.sources.benchmarks import benchmark_names
from bagmar_cli.data.store.paths import data_root
from bagmar_cli.errors import DatasetError, SettingError
from bagmar_cli.settings import DataSettings, Settings

# Set from the manifest by bind_dataset; a checkpoint of an older bagmar may hold the unbound values.
DATASET_KEYS = ("data.root", "data.dataset", "data.imb", "data.profile", "data.val_per_class")


def resolve_data_root(data: DataSettings) -> Path:
    """`data.root`, or the default directory `bagmar prepare` writes for `data.dataset` (at `data.imb` for the
    in-memory datasets; a benchmark read from image files has one, $BAGMAR_DATA_DIR/<name>)."""
    if data.root is not None:
        return data.root
    if data.dataset is None:
        raise SettingError("no dataset: pass `data.root` DIR (a directory written by `bagmar prepare`)")
    if data.dataset in benchmark_names():
        return data_root() / data.dataset
    get_dataset(data.dataset)  # an unknown name is a usage error, not a missing directory
    return default_data_dir(data.dataset, data.imb, data.profile)


def bind_dataset(settings: Settings) -> tuple[Settings, Path, Manifest]:
    """The settings with `data` describing the dataset actually read: its absolute root and the manifest's
    dataset, imb, profile and val_per_class (a preset's `imb = 100` must not be recorded for an imb-10 set)."""
    given = resolve_data_root(settings.data)
    if settings.data.root is None and not given.exists():
        raise DatasetError(
            f"no prepared dataset at {given}, where `bagmar prepare {settings.data.dataset}` writes it: prepare it "
            "first, or pass `data.root` DIR"
        )
    manifest = load_manifest(given)  # errors name the directory as the user gave it
    root = Path(given).resolve()
    return bound_to(settings, root, manifest), root, manifest


def bound_to(settings: Settings, root: Path, manifest: Manifest) -> Settings:
    """`settings` with `data` set from the dataset at `root` (already read: its `manifest`)."""
    data = settings.data.model_copy(
        update={
            "root": root,
            "dataset": manifest.dataset,
            "imb": manifest.imb,
            "profile": manifest.profile,
            "val_per_class": manifest.val_per_class,
        }
    )
    return settings.model_copy(update={"data": data})
