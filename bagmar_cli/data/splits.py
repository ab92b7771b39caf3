"""A split opened as a torch Dataset, whatever holds it: a uint8 tensor file or a list of image files.

Training and evaluation read every split through `open_split` / `open_eval_split`; only these functions know
how a split is stored. Items are `(image, label)` pairs, or `Undecodable` markers for image files that fail
to decode (dropped by `collate_skipping` and counted by `SkipUndecodable` during training).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from bagmar_cli.console import warn
from bagmar_cli.data.augment.tensors import TensorImages, eval_transform
from bagmar_cli.data.filelists import parse_list
from bagmar_cli.data.images import Batch, EvalPreprocess, ImageListDataset, Undecodable, collate_skipping
from bagmar_cli.data.manifest import ListSplitInfo, Manifest, load_manifest
from bagmar_cli.data.store.tensors import load_split
from bagmar_cli.errors import DatasetError, SettingError

Transform = Callable[[Any], Tensor]
RESIZE_RATIO = 256 / 224  # evaluation resizes the shorter side to crop * 256/224, then center-crops (ImageNet's habit)


@dataclass(frozen=True)
class OpenedSplit:
    """A split as a Dataset, with its labels (int64, in item order) and per-class counts."""

    name: str
    dataset: Dataset[Any]  # (image, label) items; a file list's may be Undecodable
    labels: Tensor
    counts: list[int]
    files: bool  # True when items are decoded from image files (and may be Undecodable)


def is_file_list(manifest: Manifest, split: str) -> bool:
    """Whether `split` is a list of image files (else a tensor file)."""
    return isinstance(manifest.splits.get(split), ListSplitInfo)


def dataset_preprocess(manifest: Manifest, crop: int | None = None) -> EvalPreprocess:
    """The evaluation preprocessing a file-list dataset expects: resize, center crop to `crop` (default the
    manifest's image size), normalise with the manifest's mean and std."""
    size = manifest.image_size[1]
    resize = manifest.eval_resize or round(size * RESIZE_RATIO)
    if crop is not None and crop != size:
        resize, size = round(resize * crop / size), crop
    return EvalPreprocess(resize=resize, crop=size, mean=list(manifest.mean), std=list(manifest.std))


def open_split(root: Path, split: str, transform: Transform | None = None) -> OpenedSplit:
    """`split` of the dataset in `root`, items transformed by `transform` (uint8 (C, H, W) tensors for a tensor
    split, RGB PIL images for a file list; None: as stored)."""
    manifest = load_manifest(root)
    if split not in manifest.splits:
        raise DatasetError(f"dataset {root} has no split {split!r}; available: {', '.join(manifest.splits)}")
    if is_file_list(manifest, split):
        return _open_list(Path(root), manifest, split, transform)
    images, labels = load_split(root, split)
    counts = manifest.splits[split].counts
    return OpenedSplit(split, TensorImages(images, labels, transform or nn.Identity()), labels, counts, False)


def open_eval_split(
    root: Path, split: str, preprocess: EvalPreprocess | None, mean: list[float], std: list[float]
) -> OpenedSplit:
    """`split` preprocessed for evaluation: with `preprocess` (a model trained on image files), else as stored and
    normalised with `mean` and `std` (a model trained on tensors, which evaluates only tensor splits)."""
    manifest = load_manifest(root)
    if is_file_list(manifest, split):
        if preprocess is None:
            raise SettingError(
                f"split {split!r} of {root} is a list of image files, but the model records no image preprocessing "
                "(it was trained on a tensor dataset): evaluate it on a tensor dataset"
            )
        return open_split(root, split, preprocess.transform())
    opened = open_split(root, split)
    tensors = opened.dataset
    assert isinstance(tensors, TensorImages)
    transform = preprocess.transform() if preprocess is not None else eval_transform(mean, std)
    # whole batches sliced at once: as fast as the tensor slicing this replaces
    return replace(opened, dataset=TensorBatches(tensors.images, tensors.labels, transform))


class TensorBatches(Dataset[tuple[Tensor, Tensor]]):
    """Images held as one uint8 tensor, fetched a batch at a time (`__getitems__`) through a deterministic transform.

    For evaluation only: a random augmentation applied to a whole batch would give every image the same draw.
    """

    def __init__(self, images: Tensor, labels: Tensor, transform: Transform) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.transform(self.images[index]), self.labels[index]

    def __getitems__(self, indices: Sequence[int]) -> Batch:
        index = torch.as_tensor(indices, dtype=torch.int64)
        return Batch(self.transform(self.images[index]), self.labels[index], [])


def collate_eval(items: Batch | list[Any]) -> Batch:
    """collate_fn of evaluation loaders: a batch fetched whole passes through; items are stacked, failures kept."""
    return items if isinstance(items, Batch) else collate_skipping(items)


def eval_loader(dataset: Dataset[Any], batch_size: int, workers: int = 0) -> DataLoader[Any]:
    """Batches in dataset order, as `Batch`es (images, labels, undecodable files)."""
    return DataLoader(
        dataset,
        batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=collate_eval,
        persistent_workers=False,
        pin_memory=torch.cuda.is_available() and workers > 0,
    )


def _open_list(root: Path, manifest: Manifest, split: str, transform: Transform | None) -> OpenedSplit:
    """A file-list split, its list checked against the manifest (SHA-256, per-class counts)."""
    info = manifest.splits[split]
    assert isinstance(info, ListSplitInfo)
    files = parse_list(root / info.list_file, manifest.num_classes)
    if files.sha256 != info.sha256:
        raise DatasetError(
            f"{root / info.list_file} differs from the list this dataset was prepared with (SHA-256 in the manifest); "
            "prepare the dataset again"
        )
    images_dir = manifest.images_dir(root)
    if not images_dir.is_dir():
        raise DatasetError(
            f"the image root of {root} ({images_dir}) is not a folder: move the images back or prepare again"
        )
    dataset = ImageListDataset(images_dir, files.paths, files.labels, transform)
    return OpenedSplit(split, dataset, torch.from_numpy(files.labels), list(info.counts), True)


class SkipUndecodable:
    """Training batches without the images that failed to decode; each is warned about with its path and counted.

    More than `max_fraction` of the split's images failing in one epoch stops the run with one DatasetError. A
    batch none of whose images decode is left out, except with `same_steps` (several processes, whose collective
    gradient steps must line up): there the last good batch is taken again, and one at the start of an epoch,
    with none before it, is a DatasetError (the run stops rather than hang the other processes).
    """

    def __init__(self, loader: DataLoader[Any], split_size: int, max_fraction: float, same_steps: bool = False) -> None:
        self.loader, self.failed, self.same_steps = loader, 0, same_steps
        self.limit = int(max_fraction * split_size)
        self.max_fraction = max_fraction

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        last: tuple[Tensor, Tensor] | None = None
        for batch in self.loader:
            if not isinstance(batch, Batch):
                yield batch
                continue
            for bad in batch.failed:
                self._count(bad)
            if len(batch.labels):
                last = (batch.images, batch.labels)
                yield last
            elif self.same_steps:
                if last is None:
                    raise DatasetError(
                        f"none of the {len(batch.failed)} images of an epoch's first batch decode (the first: "
                        f"{batch.failed[0].path}); fix or remove them and prepare the dataset again"
                    )
                yield last  # the other processes take a step now: this one repeats its last batch

    def _count(self, bad: Undecodable) -> None:
        self.failed += 1
        warn(f"skipped an image that does not decode: {bad.path} ({bad.reason})")
        if self.failed > self.limit:
            raise DatasetError(
                f"{self.failed} images of this epoch failed to decode, more than data.max_bad_fraction = "
                f"{self.max_fraction:g} of the split allows (the last: {bad.path}); fix or remove them and prepare "
                "the dataset again, or raise data.max_bad_fraction"
            )
