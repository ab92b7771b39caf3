"""Datasets: registered builders, long-tailed splits on disk with a manifest, and training samplers.

Importing the package registers every dataset (cifar10, cifar100, digits, fashion_mnist); the benchmarks read
from image files (imagenet_lt, inat2018, places_lt) and a user's folders are prepared by data/prepare_files.py.
"""

from bagmar_cli.data import cifar, digits, fashion_mnist  # noqa: F401  (registration)
from bagmar_cli.data.longtail import lt_counts
from bagmar_cli.data.manifest import Manifest, SourceInfo, SplitInfo, load_manifest
from bagmar_cli.data.prepare import prepare_dataset
from bagmar_cli.data.prepare_files import prepare_any, prepare_benchmark, prepare_folder
from bagmar_cli.data.registry import DatasetSpec, dataset_names, get_dataset, register_dataset
from bagmar_cli.data.samplers import epoch_indices, epoch_length, rank_share
from bagmar_cli.data.store import default_data_dir, load_split

__all__ = [
    "DatasetSpec",
    "Manifest",
    "SourceInfo",
    "SplitInfo",
    "dataset_names",
    "default_data_dir",
    "epoch_indices",
    "epoch_length",
    "get_dataset",
    "load_manifest",
    "load_split",
    "lt_counts",
    "prepare_any",
    "prepare_benchmark",
    "prepare_dataset",
    "prepare_folder",
    "rank_share",
    "register_dataset",
]
