"""Training augmentation for image-file datasets: the large-scale long-tailed recipe, built with timm.

RandomResizedCrop to the network's input size, horizontal flip, ColorJitter and RandAugment (timm's
implementation, as the authors' pipeline uses it), then the model's own normalisation. Evaluation
preprocessing is `data.images.EvalPreprocess`.
"""

from __future__ import annotations

from collections.abc import Callable

from PIL import Image
from timm.data.transforms_factory import transforms_imagenet_train
from torch import Tensor

from bagmar_cli.data.images import EvalPreprocess
from bagmar_cli.settings import DataSettings


def image_train_transform(data: DataSettings, preprocess: EvalPreprocess) -> Callable[[Image.Image], Tensor]:
    """PIL image -> float32 (3, crop, crop) tensor, augmented as `data` says and normalised as `preprocess` does."""
    return transforms_imagenet_train(
        img_size=preprocess.crop,
        # without the random crop: the largest central square (RandomResizedCrop's fallback), resized
        scale=(data.crop_scale_min, 1.0) if data.random_crop else (1.0, 1.0),
        ratio=(3 / 4, 4 / 3) if data.random_crop else (1.0, 1.0),
        hflip=0.5 if data.hflip else 0.0,
        color_jitter=data.color_jitter or None,
        force_color_jitter=bool(data.color_jitter),  # timm drops jitter when RandAugment is on; the recipe keeps both
        auto_augment=data.randaugment,
        interpolation=preprocess.interpolation,
        mean=tuple(preprocess.mean),
        std=tuple(preprocess.std),
    )
