"""Training augmentation for image-file datasets: the large-scale long-tailed recipe, built with timm.

RandomResizedCrop to the network's input size, horizontal flip, ColorJitter and RandAugment (timm's
implementation, as the authors' pipeline uses it), then the model's own normalisation. Evaluation
preprocessing is `data.images.EvalPreprocess`.

Small images (a stored longer side of at most `image_stats.SMALL_SIDE`, 64 pixels: CIFAR, MNIST, Tiny-ImageNet
sizes) are cropped as the in-memory recipes crop them instead: resized to the input size, then shifted by a random
crop after zero padding (`data.crop_padding`, in the images' own pixels). RandomResizedCrop's smallest crop, 8 % of
the area, would leave a 28-pixel image an 8x8 patch blown up to the input size (issue 24); flip, jitter and
RandAugment are the same.

The random-resized crop is done while decoding (`TrainTransform.decode`): its box is drawn on the full-size
image first, then a JPEG is decoded at the largest reduced scale (PIL's draft mode: 1/2, 1/4 or 1/8) at which the
box still holds at least the output resolution, and the box is mapped onto it. The crop sees the same region at
no less than the resolution it is resized to, so the sample is close to the full-decode one at a fraction of the
decoding cost (a 500x375 JPEG cropped to a small box decodes at 1/2 or 1/4 scale).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import numpy as np
import torch
from PIL import Image
from timm.data.transforms import MaybeToTensor, RandomResizedCropAndInterpolation
from timm.data.transforms_factory import transforms_imagenet_train
from torch import Tensor
from torchvision import transforms

from bagmar_cli.data.image_stats import is_small
from bagmar_cli.data.images import EvalPreprocess
from bagmar_cli.settings import DataSettings

DRAFT_FACTORS = (8, 4, 2, 1)  # the reduced scales libjpeg decodes at (what PIL's draft mode offers)
RESAMPLE = {"nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR}
RESAMPLE["bicubic"] = Image.Resampling.BICUBIC

Box = tuple[int, int, int, int]  # (top, left, height, width) on the full-size image, as timm draws it


class ToNormalizedTensor:
    """RGB PIL image -> float32 (3, H, W) tensor, (x / 255 - mean) / std in one pass (ToTensor + Normalize fused)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        std_tensor = torch.tensor(std, dtype=torch.float32)
        self.scale = (1 / (255 * std_tensor)).view(-1, 1, 1)
        self.shift = (-torch.tensor(mean, dtype=torch.float32) / std_tensor).view(-1, 1, 1)

    def __call__(self, image: Image.Image) -> Tensor:
        pixels = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1)
        return pixels.to(torch.float32, memory_format=torch.contiguous_format).mul_(self.scale).add_(self.shift)


class ToUint8Tensor:
    """RGB PIL image -> uint8 (3, H, W) tensor: a quarter of float32's bytes through the DataLoader worker queues.

    Batches are normalised afterwards, on the training device, by `normalize_uint8`.
    """

    def __call__(self, image: Image.Image) -> Tensor:
        return torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).contiguous()


def normalize_uint8(batch: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """uint8 (N, 3, H, W) -> float32 (x / 255 - mean) / std on `batch`'s device: `ToNormalizedTensor` per batch."""
    std_tensor = torch.tensor(std, dtype=torch.float32, device=batch.device).view(1, -1, 1, 1)
    mean_tensor = torch.tensor(mean, dtype=torch.float32, device=batch.device).view(1, -1, 1, 1)
    return batch.to(torch.float32).mul_(1 / (255 * std_tensor)).sub_(mean_tensor / std_tensor)


class TrainTransform:
    """PIL image -> augmented, normalised float32 tensor; decodes files itself (a `DecodingTransform`).

    `decode` draws the random-resized-crop box on the full-size image, decodes (a JPEG at reduced scale when
    `draft` is on) and resizes the box to the output size; `augment` runs timm's flip, RandAugment, ColorJitter,
    ToTensor and Normalize. Calling the transform on a decoded image does both (no draft: it is decoded already).
    """

    def __init__(self, crop: RandomResizedCropAndInterpolation, rest: transforms.Compose, draft: bool) -> None:
        self.crop = crop
        self.rest = rest
        self.draft = draft

    def draw_box(self, image: Image.Image) -> Box:
        """timm's RandomResizedCrop box on `image`'s full size (an opened, undecoded file has its size)."""
        get_params = RandomResizedCropAndInterpolation.get_params
        box: Box = get_params(image, self.crop.scale, self.crop.ratio)  # type: ignore[no-untyped-call]  # timm's is unannotated
        return box

    def decode(self, image: Image.Image) -> Image.Image:
        """An opened image file -> its random-resized crop at the output size, RGB."""
        box = self.draw_box(image)
        factor = self._draft(image, box) if self.draft else 1.0
        image.load()
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        top, left, height, width = (value / factor for value in box)
        width_out, height_out = self.crop.size[1], self.crop.size[0]
        return rgb.resize((width_out, height_out), self._resample(), box=(left, top, left + width, top + height))

    def augment(self, image: Image.Image) -> Tensor:
        """The cropped image -> flipped, RandAugment-ed, colour-jittered, normalised tensor."""
        tensor: Tensor = self.rest(image)
        return tensor

    def __call__(self, image: Image.Image) -> Tensor:
        return self.augment(self.decode(image))

    def _draft(self, image: Image.Image, box: Box) -> float:
        """Ask a JPEG to decode at the largest reduction that keeps `box` >= the output size; the factor taken."""
        _, _, height, width = box
        out_height, out_width = self.crop.size
        factor = next((f for f in DRAFT_FACTORS if height >= f * out_height and width >= f * out_width), 1)
        if factor == 1:  # a box smaller than twice the output (or one that is upsampled) needs every pixel
            return 1.0
        full_width = image.size[0]
        # PIL picks the largest factor f with size // request >= f in both sides: requesting size // factor gives it
        drafted = image.draft("RGB", (image.size[0] // factor, image.size[1] // factor))
        return 1.0 if drafted is None else full_width / drafted[1][2]  # not a JPEG: decoded at full size

    def _resample(self) -> Image.Resampling:
        """The PIL filter of the crop's interpolation (timm's "random" picks one per image)."""
        mode = self.crop.interpolation
        mode = random.choice(mode) if isinstance(mode, (tuple, list)) else mode
        return RESAMPLE[mode.value]


def image_train_transform(
    data: DataSettings,
    preprocess: EvalPreprocess,
    *,
    native_size: Sequence[int] | None = None,
    draft: bool = True,
    normalize: bool = True,
) -> Callable[[Image.Image], Tensor]:
    """PIL image -> float32 (3, crop, crop) tensor, augmented as `data` says and normalised as `preprocess` does.

    Images stored at a small `native_size` ([H, W], `is_small`) get a `PadCropTransform`, others a `TrainTransform`;
    both decode the file themselves in `ImageListDataset` (a `TrainTransform` JPEGs at reduced scale with `draft`).
    `normalize` False: uint8 tensors instead, for `normalize_uint8` on the batch (cheaper through worker queues).
    """
    timm_transform = transforms_imagenet_train(
        img_size=preprocess.crop,
        # without the random crop: the largest central square (RandomResizedCrop's fallback), resized
        scale=(data.crop_scale_min, 1.0) if data.random_crop else (1.0, 1.0),
        ratio=(3 / 4, 4 / 3) if data.random_crop else (1.0, 1.0),
        hflip=0.5 if data.hflip else 0.0,
        color_jitter=data.color_jitter or None,  # type: ignore[arg-type]  # timm's hint omits None (no ColorJitter)
        force_color_jitter=bool(data.color_jitter),  # timm drops jitter when RandAugment is on; the recipe keeps both
        auto_augment=data.randaugment,
        interpolation=preprocess.interpolation,
        mean=tuple(preprocess.mean),
        std=tuple(preprocess.std),
    )
    crop, *augment, to_tensor, timm_normalize = timm_transform.transforms
    expected = (RandomResizedCropAndInterpolation, MaybeToTensor, transforms.Normalize)
    if not all(isinstance(step, kind) for step, kind in zip((crop, to_tensor, timm_normalize), expected, strict=True)):
        # timm's layout changed: fail here, not hours into training
        raise TypeError(f"unexpected timm training transform: {timm_transform}")
    finish = ToNormalizedTensor(preprocess.mean, preprocess.std) if normalize else ToUint8Tensor()
    rest = transforms.Compose([*augment, finish])
    if native_size is not None and is_small(native_size):
        padding = round(data.crop_padding * preprocess.crop / min(native_size)) if data.random_crop else 0
        return PadCropTransform(preprocess.crop, padding, data.random_crop, preprocess.interpolation, rest)
    return TrainTransform(crop, rest, draft)


class PadCropTransform:
    """Small images: PIL image -> RGB, shorter side resized to `size`, a random `size` square of it after `padding`
    pixels of zeros on every side (the CIFAR recipe's crop; a center crop without `random_crop`), then `rest`."""

    def __init__(
        self, size: int, padding: int, random_crop: bool, interpolation: str, rest: transforms.Compose
    ) -> None:
        self.size = size
        self.crop = transforms.RandomCrop(size, padding=padding) if random_crop else transforms.CenterCrop(size)
        self.resample = RESAMPLE[interpolation]
        self.rest = rest

    def decode(self, image: Image.Image) -> Image.Image:
        """An opened image file -> RGB, resized (when its shorter side is not the output size) and cropped."""
        image.load()
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        if min(rgb.size) != self.size:
            scale = self.size / min(rgb.size)
            width, height = (max(self.size, round(side * scale)) for side in rgb.size)
            rgb = rgb.resize((width, height), self.resample)
        cropped: Image.Image = self.crop(rgb)
        return cropped

    def augment(self, image: Image.Image) -> Tensor:
        """The cropped image -> flipped, colour-jittered, RandAugment-ed, normalised tensor (as `TrainTransform`)."""
        tensor: Tensor = self.rest(image)
        return tensor

    def __call__(self, image: Image.Image) -> Tensor:
        return self.augment(self.decode(image))
