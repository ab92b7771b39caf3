"""Datasets: one registry of sources, long-tailed splits on disk with a manifest, and training samplers.

sources/  what a dataset is prepared from, one `@register_source` entry each (cifar10, cifar100, digits,
          fashion_mnist held in memory; imagenet_lt, inat2018, places_lt and a user's folder as image files)
store/    writing dataset directories: tensor split files or image-file lists, staged and published
augment/  training augmentation and evaluation preprocessing (tensors, whole batches, decoded image files)
The modules beside them read what was written: manifests, splits, file lists, images, samplers.
"""

from bagmar_cli.data import sources  # noqa: F401  (registration)
from bagmar_cli.data.longtail import lt_counts
from bagmar_cli.data.manifest import Manifest, SourceInfo, SplitInfo, load_manifest
from bagmar_cli.data.samplers import epoch_indices, epoch_length, rank_share
from bagmar_cli.data.sources.folder import prepare_folder
from bagmar_cli.data.sources.options import PrepareOptions
from bagmar_cli.data.sources.registry import (
    Source,
    dataset_names,
    get_dataset,
    get_source,
    prepare_source,
    register_source,
    source_names,
)
from bagmar_cli.data.sources.tensors import DatasetSpec, prepare_dataset
from bagmar_cli.data.store.paths import default_data_dir
from bagmar_cli.data.store.tensors import load_split

__all__ = [
    "DatasetSpec",
    "Manifest",
    "PrepareOptions",
    "Source",
    "SourceInfo",
    "SplitInfo",
    "dataset_names",
    "default_data_dir",
    "epoch_indices",
    "epoch_length",
    "get_dataset",
    "get_source",
    "load_manifest",
    "load_split",
    "lt_counts",
    "prepare_dataset",
    "prepare_folder",
    "prepare_source",
    "rank_share",
    "register_source",
    "source_names",
]
