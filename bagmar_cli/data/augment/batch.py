"""The CIFAR training augmentation of `augment.tensors.train_transform`, applied to a whole uint8 batch on its device.

Same operations, order and parameters as the per-sample path: random crop after zero padding, horizontal flip,
AutoAugment (torchvision's CIFAR10 policy, `nearest` interpolation, fill 0), uint8 -> float in [0, 1] ->
per-channel normalisation, then Cutout (zeros in normalised space, as `augment.tensors.Cutout` writes them). Each
image draws its own crop offset, flip, sub-policy, application coins, signs and Cutout centre; the draws are
made on the host from a CPU `torch.Generator` (so no step waits for the device and a seed gives the same draws
on any device), then images that share an (operation, magnitude, sign) go through the torchvision v2 functional
op together as one group tensor.

The trainer's use: keep the dataset's uint8 tensor on the device once, index a batch, call
`augment(batch_uint8, generator)` and feed the returned normalised float batch to the model, exactly where the
DataLoader's batch goes today (normalisation is part of the call, as it is part of `train_transform`). Seed the
generator from (seed, epoch) as the DataLoader's is, so that a resumed run replays its epochs. The number of
AutoAugment groups levels off near 60 whatever the batch (34 at 64 images, 59 at 1,024), so on a GPU, where each
group costs a few kernel launches, augmenting several batches in one call and slicing amortises them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from bagmar_cli.settings import DataSettings

Op = tuple[str, float, int | None]  # (operation, probability, magnitude bin) as torchvision writes them
SubPolicy = tuple[Op, Op]
NUM_BINS = 10  # torchvision AutoAugment's magnitude bins


def cifar10_policy() -> list[SubPolicy]:
    """torchvision's AutoAugment CIFAR10 policy: 25 sub-policies of two (operation, probability, bin)."""
    return list(v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10)._policies)


def _magnitude_bins(op: str, height: int, width: int) -> Tensor | None:
    """The 10 magnitudes torchvision's AutoAugment offers `op` at this image size (None: no magnitude)."""
    bins: Tensor | None = v2.AutoAugment._AUGMENTATION_SPACE[op][0](NUM_BINS, height, width)
    return bins


def _is_signed(op: str) -> bool:
    signed: bool = v2.AutoAugment._AUGMENTATION_SPACE[op][1]
    return signed


@dataclass(frozen=True)
class Draws:
    """Every random choice for a batch of n images (CPU tensors), in the per-sample path's terms."""

    top: Tensor  # (n,) int64: crop window row in the padded image
    left: Tensor  # (n,) int64: crop window column in the padded image
    flip: Tensor  # (n,) bool: flipped horizontally
    policy: Tensor  # (n,) int64: AutoAugment sub-policy index
    applied: Tensor  # (n, 2) bool: the sub-policy's first / second operation applied (rand <= probability)
    negative: Tensor  # (n, 2) bool: magnitude negated (drawn for every slot, used by signed operations only)
    cy: Tensor  # (n,) int64: Cutout centre row
    cx: Tensor  # (n,) int64: Cutout centre column


_Apply = Callable[[Tensor, float], Tensor]

# Each torchvision AutoAugment operation as a v2 functional call on a (k, C, H, W) uint8 group tensor; the same
# arguments as torchvision's `_AutoAugmentBase._apply_image_or_video_transform` (fill None means 0).
_OPS: dict[str, _Apply] = {
    "Identity": lambda x, m: x,
    "ShearX": lambda x, m: F.affine(
        x, angle=0.0, translate=[0, 0], scale=1.0, shear=[math.degrees(math.atan(m)), 0.0], center=[0, 0]
    ),
    "ShearY": lambda x, m: F.affine(
        x, angle=0.0, translate=[0, 0], scale=1.0, shear=[0.0, math.degrees(math.atan(m))], center=[0, 0]
    ),
    "TranslateX": lambda x, m: F.affine(x, angle=0.0, translate=[int(m), 0], scale=1.0, shear=[0.0, 0.0]),
    "TranslateY": lambda x, m: F.affine(x, angle=0.0, translate=[0, int(m)], scale=1.0, shear=[0.0, 0.0]),
    "Rotate": lambda x, m: F.rotate(x, angle=m),
    "Brightness": lambda x, m: F.adjust_brightness(x, brightness_factor=1.0 + m),
    "Color": lambda x, m: F.adjust_saturation(x, saturation_factor=1.0 + m),
    "Contrast": lambda x, m: F.adjust_contrast(x, contrast_factor=1.0 + m),
    "Sharpness": lambda x, m: F.adjust_sharpness(x, sharpness_factor=1.0 + m),
    "Posterize": lambda x, m: F.posterize(x, bits=int(m)),
    "Solarize": lambda x, m: F.solarize(x, threshold=255.0 * m),
    "AutoContrast": lambda x, m: F.autocontrast(x),
    "Equalize": lambda x, m: F.equalize(x),
    "Invert": lambda x, m: F.invert(x),
}


def apply_op(images: Tensor, op: str, magnitude: float) -> Tensor:
    """One AutoAugment operation at one signed magnitude on a uint8 (k, C, H, W) group."""
    return _OPS[op](images, magnitude)


class BatchAugment:
    """Crop, flip, AutoAugment, normalise and Cutout for a uint8 (N, C, H, W) batch; see the module docstring."""

    def __init__(
        self,
        image_size: Sequence[int],
        mean: Sequence[float],
        std: Sequence[float],
        *,
        crop_padding: int | None = 4,
        hflip: float = 0.5,
        policy: Sequence[SubPolicy] | None = None,
        cutout: int = 0,
    ) -> None:
        """`image_size` (C, H, W); `crop_padding` None: no crop; `hflip` the flip probability (0: off);
        `policy` the AutoAugment sub-policies (None: off); `cutout` the square's side (0: off)."""
        self.channels, self.height, self.width = (int(s) for s in image_size)
        self.mean, self.std = [float(m) for m in mean], [float(s) for s in std]
        self.crop_padding, self.hflip, self.cutout = crop_padding, float(hflip), int(cutout)
        self.policy = list(policy) if policy is not None else None
        if self.policy is not None:
            self._build_policy_tables(self.policy)

    @classmethod
    def from_settings(
        cls, settings: DataSettings, image_size: Sequence[int], mean: Sequence[float], std: Sequence[float]
    ) -> BatchAugment:
        """The batch twin of `augment.tensors.train_transform(settings, image_size, mean, std)`."""
        return cls(
            image_size,
            mean,
            std,
            crop_padding=settings.crop_padding if settings.random_crop else None,
            hflip=0.5 if settings.hflip else 0.0,
            policy=cifar10_policy() if settings.autoaugment else None,
            cutout=settings.cutout,
        )

    def __call__(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Augment a uint8 (N, C, H, W) batch on its device; returns normalised float32 (N, C, H, W)."""
        return self.apply(images, self.draw(len(images), generator))

    def _build_policy_tables(self, policy: Sequence[SubPolicy]) -> None:
        """Per (sub-policy, slot): probability and an integer key of (operation, magnitude bin) for grouping."""
        self._probability = torch.tensor([[op[1] for op in sub] for sub in policy], dtype=torch.float32)
        keys: list[tuple[str, int | None]] = sorted({(op[0], op[2]) for sub in policy for op in sub}, key=str)
        self._keys = keys
        index = {key: i for i, key in enumerate(keys)}
        self._key = torch.tensor([[index[(op[0], op[2])] for op in sub] for sub in policy], dtype=torch.int64)
        self._magnitude: list[float] = []
        signed: list[bool] = []
        for op, bin_ in keys:
            bins = _magnitude_bins(op, self.height, self.width)
            self._magnitude.append(0.0 if bins is None or bin_ is None else float(bins[bin_]))
            signed.append(bins is not None and _is_signed(op))
        self._signed = torch.tensor(signed)

    def draw(self, n: int, generator: torch.Generator | None = None) -> Draws:
        """All random choices for n images, drawn on the host in a fixed order (one call per kind)."""
        g = generator
        pad = self.crop_padding
        zeros = torch.zeros(n, dtype=torch.int64)
        top, left = zeros, zeros
        if pad is not None:
            top = torch.randint(0, 2 * pad + 1, (n,), generator=g) if pad else zeros
            left = torch.randint(0, 2 * pad + 1, (n,), generator=g) if pad else zeros
        flip = torch.rand(n, generator=g) < self.hflip if self.hflip else torch.zeros(n, dtype=torch.bool)
        policy, applied, negative = zeros, torch.zeros(n, 2, dtype=torch.bool), torch.zeros(n, 2, dtype=torch.bool)
        if self.policy is not None:
            policy = torch.randint(len(self.policy), (n,), generator=g)
            applied = torch.rand(n, 2, generator=g) <= self._probability[policy]
            negative = torch.rand(n, 2, generator=g) <= 0.5
        cy, cx = zeros, zeros
        if self.cutout:
            cy = torch.randint(self.height, (n,), generator=g)
            cx = torch.randint(self.width, (n,), generator=g)
        return Draws(top, left, flip, policy, applied, negative, cy, cx)

    def apply(self, images: Tensor, draws: Draws) -> Tensor:
        """The augmentation these draws describe, on a uint8 (N, C, H, W) batch, on the batch's device."""
        expected = (self.channels, self.height, self.width)
        if images.dtype != torch.uint8 or images.ndim != 4 or tuple(images.shape[1:]) != expected:
            raise ValueError(f"expected a uint8 (N, *{expected}) batch, got {images.dtype} {tuple(images.shape)}")
        images = self._crop_and_flip(images, draws)
        if self.policy is not None:
            images = self._autoaugment(images, draws)
        out: Tensor = F.normalize(F.to_dtype(images, torch.float32, scale=True), self.mean, self.std)
        if self.cutout:
            out = self._cutout(out, draws)
        return out

    def _crop_and_flip(self, images: Tensor, draws: Draws) -> Tensor:
        """Pad once, then gather each image's window, columns reversed where it flips: one flat gather."""
        n, c, h, w = images.shape
        if self.crop_padding is None and not bool(draws.flip.any()):
            return images
        pad = self.crop_padding or 0
        padded = images.new_zeros(n, c, h + 2 * pad, w + 2 * pad)
        padded[:, :, pad : pad + h, pad : pad + w] = images
        rows = draws.top[:, None] + torch.arange(h)
        steps = torch.arange(w)
        cols = draws.left[:, None] + torch.where(draws.flip[:, None], w - 1 - steps, steps)
        flat = (rows[:, :, None] * (w + 2 * pad) + cols[:, None, :]).view(n, 1, h * w)
        index = flat.to(images.device, non_blocking=True).expand(n, c, h * w)
        return padded.flatten(2).gather(2, index).view(n, c, h, w)

    def _autoaugment(self, images: Tensor, draws: Draws) -> Tensor:
        """Slot by slot, each group of images sharing (operation, magnitude, sign) through one functional op."""
        images = images.clone()
        for slot in (0, 1):
            key = self._key[draws.policy, slot]
            signed = self._signed[key]
            code = torch.where(draws.applied[:, slot], key * 2 + (draws.negative[:, slot] & signed), -1)
            for value in torch.unique(code).tolist():
                if value < 0:
                    continue
                members = torch.nonzero(code == value).flatten().to(images.device, non_blocking=True)
                (op, _), magnitude = self._keys[value // 2], self._magnitude[value // 2]
                images[members] = apply_op(images[members], op, -magnitude if value % 2 else magnitude)
        return images

    def _cutout(self, out: Tensor, draws: Draws) -> Tensor:
        """Zero rows [max(cy - s//2, 0), cy + s//2) x the same columns around each image's centre."""
        half, device = self.cutout // 2, out.device
        rows, cols = torch.arange(self.height), torch.arange(self.width)
        in_rows = (rows >= (draws.cy - half).clamp(min=0)[:, None]) & (rows < (draws.cy + half)[:, None])
        in_cols = (cols >= (draws.cx - half).clamp(min=0)[:, None]) & (cols < (draws.cx + half)[:, None])
        square = (in_rows[:, :, None] & in_cols[:, None, :])[:, None].to(device, non_blocking=True)
        return out.masked_fill(square, 0.0)
