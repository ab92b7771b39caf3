"""Training and evaluation transforms on uint8 image tensors (C, H, W), as the CIFAR-LT recipes use them.

One image at a time, in DataLoader workers: the in-memory datasets' path. `augment.batch` is the same recipe on a
whole batch on its device; `augment.images` is the large-scale recipe for decoded image files.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torchvision.transforms import v2

from bagmar_cli.settings import DataSettings


class Cutout(nn.Module):
    """Zero one size×size square at a random centre, clipped at the border (DeVries & Taylor 2017)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        _, height, width = image.shape
        cy, cx = int(torch.randint(height, ())), int(torch.randint(width, ()))
        top, left = max(cy - self.size // 2, 0), max(cx - self.size // 2, 0)
        image = image.clone()
        image[:, top : cy + self.size // 2, left : cx + self.size // 2] = 0
        return image


def eval_transform(mean: list[float], std: list[float]) -> nn.Module:
    """uint8 -> float in [0, 1] -> per-channel normalisation."""
    compose: nn.Module = v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])
    return compose


def train_transform(settings: DataSettings, image_size: list[int], mean: list[float], std: list[float]) -> nn.Module:
    """The augmentation pipeline the settings switch on, then normalisation and Cutout."""
    steps: list[nn.Module] = []
    if settings.random_crop:
        steps.append(v2.RandomCrop(image_size[1:], padding=settings.crop_padding))
    if settings.hflip:
        steps.append(v2.RandomHorizontalFlip())
    if settings.autoaugment:
        steps.append(v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10))
    steps.append(eval_transform(mean, std))
    if settings.cutout:
        steps.append(Cutout(settings.cutout))
    compose: nn.Module = v2.Compose(steps)
    return compose


class TensorImages(torch.utils.data.Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Images held as one uint8 tensor (N, C, H, W) with int64 labels, transformed on access."""

    def __init__(
        self, images: torch.Tensor, labels: torch.Tensor, transform: Callable[[torch.Tensor], torch.Tensor]
    ) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.transform(self.images[index]), self.labels[index]
