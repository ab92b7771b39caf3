"""Image files read lazily: a Dataset over a split list, decoding in DataLoader workers, and eval preprocessing."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple, Protocol, runtime_checkable

import numpy as np
import torch
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, model_validator
from torch import Tensor
from torch.utils.data import Dataset, default_collate
from torchvision.transforms import InterpolationMode, v2

from bagmar_cli.data.sources.benchmarks import IMAGENET_MEAN, IMAGENET_STD

INTERPOLATIONS = {
    "nearest": InterpolationMode.NEAREST,
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
}


class Undecodable(NamedTuple):
    """What a dataset returns for an image that fails to decode: its path and why (dropped by `collate_skipping`)."""

    path: str
    reason: str


@runtime_checkable
class DecodingTransform(Protocol):
    """A transform that takes part in decoding: it sees the opened, not yet decoded file (e.g. to decode a JPEG
    at reduced scale with PIL's draft mode), then augments what it decoded."""

    def decode(self, image: Image.Image) -> Image.Image:
        """An opened image file -> the decoded RGB image the rest of the transform starts from."""
        ...

    def augment(self, image: Image.Image) -> Any:
        """The decoded image -> the training sample."""
        ...


class ImageListDataset(Dataset[tuple[Any, int] | Undecodable]):
    """(image, label) pairs from image files under `root`, decoded as RGB with PIL when an item is asked for.

    An image that cannot be decoded yields an `Undecodable` marker instead of raising, so that one bad file
    among millions does not end a run; `collate_skipping` drops and counts the markers. A `DecodingTransform`
    decodes the file itself (only its decoding errors become markers); any other transform gets the RGB image.
    """

    def __init__(
        self,
        root: Path,
        paths: Sequence[str],
        labels: Sequence[int] | np.ndarray,
        transform: Callable[[Image.Image], Any] | None = None,
    ) -> None:
        if len(paths) != len(labels):
            raise ValueError(f"{len(paths)} paths but {len(labels)} labels")
        self.root = Path(root)
        self.paths = list(paths)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.transform = transform
        self._decoding = isinstance(transform, DecodingTransform)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[Any, int] | Undecodable:
        path = self.root / self.paths[index]
        try:
            with Image.open(path) as image:
                # both load the whole file: truncation shows here
                rgb = self.transform.decode(image) if self._decoding else image.convert("RGB")  # type: ignore[union-attr]
        except (OSError, ValueError, Image.DecompressionBombError) as exc:  # UnidentifiedImageError is an OSError
            return Undecodable(str(path), str(exc) or type(exc).__name__)
        if self._decoding:
            return self.transform.augment(rgb), int(self.labels[index])  # type: ignore[union-attr]
        return (self.transform(rgb) if self.transform else rgb), int(self.labels[index])


class Batch(NamedTuple):
    """A collated batch without the images that failed to decode, and those images' paths."""

    images: Tensor
    labels: Tensor
    failed: list[Undecodable]


def collate_skipping(items: list[tuple[Any, int] | Undecodable]) -> Batch:
    """DataLoader collate_fn: stack the decoded items, set aside (and count) the undecodable ones."""
    failed = [item for item in items if isinstance(item, Undecodable)]
    good = [item for item in items if not isinstance(item, Undecodable)]
    if not good:
        return Batch(torch.empty(0), torch.empty(0, dtype=torch.int64), failed)
    images, labels = default_collate(good)
    return Batch(images, labels, failed)


class EvalPreprocess(BaseModel):
    """Evaluation preprocessing: resize the shorter side, center crop, scale to [0, 1], normalise per channel.

    One description, to be recorded with a model so that eval, predict and export agree.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    resize: PositiveInt = 256  # shorter side after resizing, in pixels
    crop: PositiveInt = 224  # side of the square center crop the network sees
    interpolation: Literal["nearest", "bilinear", "bicubic"] = "bilinear"
    mean: list[float] = Field(default_factory=lambda: list(IMAGENET_MEAN), min_length=1)  # per channel, on [0, 1]
    std: list[PositiveFloat] = Field(default_factory=lambda: list(IMAGENET_STD), min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> EvalPreprocess:
        if self.crop > self.resize:
            raise ValueError(f"crop {self.crop} is larger than the resized shorter side {self.resize}")
        if len(self.mean) != len(self.std):
            raise ValueError(f"mean has {len(self.mean)} values but std {len(self.std)}")
        return self

    def transform(self) -> v2.Compose:
        """The torchvision transform: PIL image (or uint8 tensor) -> float32 (C, crop, crop) tensor."""
        return v2.Compose(
            [
                v2.ToImage(),
                v2.Resize(self.resize, interpolation=INTERPOLATIONS[self.interpolation], antialias=True),
                v2.CenterCrop(self.crop),
                v2.ToDtype(torch.float32, scale=True),
                v2.Normalize(self.mean, self.std),
            ]
        )
