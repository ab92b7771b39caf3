"""Batch augmentation on the device: shapes, each operation by hand, equality with the per-sample path given the
same draws, and the same distribution of draws as the per-sample path (chi-square, fixed seed, with mutants)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable
from typing import Any

import pytest
import torch
from scipy.stats import chi2_contingency
from torch import Tensor
from torchvision.transforms import v2

from bagmar_cli.data.augment.batch import BatchAugment, Draws, SubPolicy, cifar10_policy
from bagmar_cli.data.augment.tensors import train_transform
from bagmar_cli.settings import DataSettings

RECIPE = DataSettings(random_crop=True, crop_padding=4, hflip=True, autoaugment=True, cutout=16)
SIZE, MEAN, STD = [3, 32, 32], [0.49, 0.48, 0.45], [0.25, 0.24, 0.26]
TV = v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10)  # torchvision's own per-image operations and magnitude table


def _draws(n: int, **fields: object) -> Draws:
    """Draws for n images: identity crop at padding `pad`, no flip, nothing applied, unless overridden."""
    base: dict[str, object] = {
        "top": torch.zeros(n, dtype=torch.int64),
        "left": torch.zeros(n, dtype=torch.int64),
        "flip": torch.zeros(n, dtype=torch.bool),
        "policy": torch.zeros(n, dtype=torch.int64),
        "applied": torch.zeros(n, 2, dtype=torch.bool),
        "negative": torch.zeros(n, 2, dtype=torch.bool),
        "cy": torch.zeros(n, dtype=torch.int64),
        "cx": torch.zeros(n, dtype=torch.int64),
    }
    base.update(fields)
    return Draws(**base)  # type: ignore[arg-type]


def _tiny(height: int, width: int) -> Tensor:
    """A (1, 1, H, W) uint8 image holding 1, 2, 3, ... row by row."""
    return torch.arange(1, height * width + 1, dtype=torch.uint8).reshape(1, 1, height, width)


def _pixels(out: Tensor) -> list[list[int]]:
    """Back from [0, 1] floats (mean 0, std 1) to the uint8 values, as nested lists."""
    return (out[0, 0] * 255).round().to(torch.int64).tolist()


# --- shapes, dtypes, devices, determinism -----------------------------------------------------------------------


def test_output_is_a_normalised_float_batch_on_the_input_device() -> None:
    images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    out = BatchAugment.from_settings(RECIPE, SIZE, MEAN, STD)(images, torch.Generator().manual_seed(0))
    assert out.shape == (8, 3, 32, 32)
    assert out.dtype == torch.float32
    assert out.device == images.device


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_batch_equals_the_cpu_batch_for_the_same_seed() -> None:
    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    augment = BatchAugment.from_settings(RECIPE, SIZE, MEAN, STD)
    on_cpu = augment(images, torch.Generator().manual_seed(5))
    on_gpu = augment(images.cuda(), torch.Generator().manual_seed(5))
    assert on_gpu.device.type == "cuda"
    # the same draws; CUDA kernels may round a resampled pixel differently, so a few differ by one uint8 level
    differs = (on_gpu.cpu() - on_cpu).abs() > 1e-5
    assert differs.float().mean() < 1e-3


def test_same_generator_seed_same_batch_other_seed_other_batch() -> None:
    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
    augment = BatchAugment.from_settings(RECIPE, SIZE, MEAN, STD)
    first = augment(images, torch.Generator().manual_seed(1))
    assert torch.equal(first, augment(images, torch.Generator().manual_seed(1)))
    assert not torch.equal(first, augment(images, torch.Generator().manual_seed(2)))


@pytest.mark.parametrize(
    "bad",
    [
        torch.zeros(2, 3, 32, 32),
        torch.zeros(3, 32, 32, dtype=torch.uint8),
        torch.zeros(2, 3, 28, 28, dtype=torch.uint8),
    ],
    ids=["float", "no batch dimension", "another image size"],
)
def test_rejects_anything_but_a_uint8_nchw_batch_of_its_image_size(bad: Tensor) -> None:
    with pytest.raises(ValueError, match="uint8"):
        BatchAugment.from_settings(RECIPE, SIZE, MEAN, STD)(bad)


def test_all_off_is_only_normalisation() -> None:
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    off = DataSettings(random_crop=False, hflip=False, autoaugment=False, cutout=0)
    out = BatchAugment.from_settings(off, SIZE, MEAN, STD)(images, torch.Generator().manual_seed(0))
    mean, std = torch.tensor(MEAN)[:, None, None], torch.tensor(STD)[:, None, None]
    assert torch.allclose(out, (images / 255 - mean) / std, atol=1e-6)


# --- each operation against a hand computation -------------------------------------------------------------------


def test_crop_takes_the_window_at_the_drawn_offset_of_the_zero_padded_image() -> None:
    augment = BatchAugment([1, 3, 3], [0.0], [1.0], crop_padding=1, hflip=0.0)
    # padded: row 0 zeros, then [0,1,2,3,0] [0,4,5,6,0] [0,7,8,9,0], row 4 zeros; window at (top 2, left 0)
    out = augment.apply(_tiny(3, 3), _draws(1, top=torch.tensor([2]), left=torch.tensor([0])))
    assert _pixels(out) == [[0, 4, 5], [0, 7, 8], [0, 0, 0]]


def test_flip_reverses_the_columns_after_the_crop() -> None:
    augment = BatchAugment([1, 3, 3], [0.0], [1.0], crop_padding=1, hflip=0.5)
    draws = _draws(1, top=torch.tensor([1]), left=torch.tensor([2]), flip=torch.tensor([True]))
    # window at (1, 2): [2,3,0] [5,6,0] [8,9,0], then mirrored
    assert _pixels(augment.apply(_tiny(3, 3), draws)) == [[0, 3, 2], [0, 6, 5], [0, 9, 8]]


def test_flip_only_images_that_drew_it() -> None:
    augment = BatchAugment([1, 2, 3], [0.0], [1.0], crop_padding=None, hflip=0.5)
    images = torch.cat([_tiny(2, 3), _tiny(2, 3)])
    out = augment.apply(images, _draws(2, flip=torch.tensor([False, True])))
    assert (out[0, 0] * 255).round().tolist() == [[1, 2, 3], [4, 5, 6]]
    assert (out[1, 0] * 255).round().tolist() == [[3, 2, 1], [6, 5, 4]]


def test_cutout_zeros_the_square_around_the_centre_clipped_at_the_border_after_normalising() -> None:
    augment = BatchAugment([1, 5, 6], [0.5], [0.5], crop_padding=None, hflip=0.0, cutout=4)
    images = torch.full((1, 1, 5, 6), 255, dtype=torch.uint8)  # normalised: (1 - 0.5) / 0.5 = 1
    out = augment.apply(images, _draws(1, cy=torch.tensor([1]), cx=torch.tensor([4])))
    # rows max(1 - 2, 0) .. 1 + 2 (exclusive) = 0, 1, 2; columns 2 .. 6 (exclusive) = 2, 3, 4, 5
    expected = [[1, 1, 0, 0, 0, 0]] * 3 + [[1, 1, 1, 1, 1, 1]] * 2
    assert out[0, 0].tolist() == expected


def _slots() -> list[tuple[int, int, bool]]:
    return [(k, slot, negative) for k in range(25) for slot in (0, 1) for negative in (False, True)]


@pytest.mark.parametrize(("k", "slot", "negative"), _slots())
def test_each_autoaugment_operation_equals_torchvisions_per_image_operation(k: int, slot: int, negative: bool) -> None:
    policy = cifar10_policy()
    op, _, bin_ = policy[k][slot]
    bins, signed = TV._AUGMENTATION_SPACE[op][0](10, 32, 32), TV._AUGMENTATION_SPACE[op][1]
    magnitude = 0.0 if bins is None else float(bins[bin_])
    if negative and signed and bins is not None:
        magnitude = -magnitude
    images = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(k))
    applied = torch.zeros(5, 2, dtype=torch.bool)
    applied[:, slot] = True
    draws = _draws(5, policy=torch.full((5,), k), applied=applied, negative=torch.full((5, 2), negative))
    augment = BatchAugment(SIZE, [0.0] * 3, [1.0] * 3, crop_padding=None, hflip=0.0, policy=policy)
    batch = (augment.apply(images, draws) * 255).round().to(torch.uint8)
    for image, got in zip(images, batch, strict=True):
        expected = TV._apply_image_or_video_transform(
            image, op, magnitude, interpolation=TV.interpolation, fill=TV._fill
        )
        assert torch.equal(got, expected), (op, magnitude)


# --- the per-sample path's draws, reproduced -------------------------------------------------------------------


def per_sample_draws(n: int, settings: DataSettings, policy: list[SubPolicy], height: int, width: int) -> Draws:
    """The random calls `train_transform` makes per image, in their order, on torch's global generator:
    RandomCrop (top, then left), RandomHorizontalFlip (flip when rand < 0.5), AutoAugment (sub-policy, then per
    operation a coin `rand <= p` and, when applied and signed, a sign `rand <= 0.5`), Cutout (row, then column)."""
    pad = settings.crop_padding if settings.random_crop else 0
    rows: list[tuple[int, int, bool, int, list[bool], list[bool], int, int]] = []
    for _ in range(n):
        top = int(torch.randint(0, 2 * pad + 1, ())) if pad else 0
        left = int(torch.randint(0, 2 * pad + 1, ())) if pad else 0
        flip = bool(torch.rand(1) < 0.5) if settings.hflip else False
        k, applied, negative = 0, [False, False], [False, False]
        if settings.autoaugment:
            k = int(torch.randint(len(policy), ()))
            for slot, (op, probability, _) in enumerate(policy[k]):
                if not torch.rand(()) <= probability:
                    continue
                applied[slot] = True
                bins, signed = TV._AUGMENTATION_SPACE[op][0](10, height, width), TV._AUGMENTATION_SPACE[op][1]
                if bins is not None and signed:
                    negative[slot] = bool(torch.rand(()) <= 0.5)
        cy = int(torch.randint(height, ())) if settings.cutout else 0
        cx = int(torch.randint(width, ())) if settings.cutout else 0
        rows.append((top, left, flip, k, applied, negative, cy, cx))

    def column(i: int, dtype: torch.dtype = torch.int64) -> Tensor:
        return torch.tensor([row[i] for row in rows], dtype=dtype)

    return Draws(column(0), column(1), column(2, torch.bool), column(3), *(column(i, torch.bool) for i in (4, 5)),
                 column(6), column(7))  # fmt: skip


GRAY = DataSettings(random_crop=True, crop_padding=2, hflip=False, autoaugment=True, cutout=7)


@pytest.mark.parametrize(
    ("settings", "size", "mean", "std"),
    [(RECIPE, SIZE, MEAN, STD), (GRAY, [1, 28, 24], [0.29], [0.35])],
    ids=["cifar recipe", "one channel, 28x24, no flip, odd cutout"],
)
def test_reproduced_draws_give_exactly_the_per_sample_paths_images(
    settings: DataSettings, size: list[int], mean: list[float], std: list[float]
) -> None:
    """The reproduction is torchvision's own sampling: fed to the batch path, the same seed gives the same images."""
    n = 400
    images = torch.randint(0, 256, (n, *size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    transform = train_transform(settings, size, mean, std)
    torch.manual_seed(11)
    expected = torch.stack([transform(image) for image in images])
    torch.manual_seed(11)
    draws = per_sample_draws(n, settings, cifar10_policy(), size[1], size[2])
    assert int(draws.applied.sum()) > n // 2  # the sample does exercise AutoAugment
    got = BatchAugment.from_settings(settings, size, mean, std).apply(images, draws)
    assert torch.equal(got, expected)


# --- same distribution: chi-square homogeneity of the batch and the per-sample draws -----------------------------

Families = dict[str, list[Hashable]]
ALPHA = 1e-3  # per category family, fixed before looking; 6 families, so at most 0.6 % to fail by chance at most
SAMPLES = 40_000  # enough for a flip probability of 0.6 or one sub-policy probability moved by 0.3 to show


def _families(d: Draws) -> Families:
    """Categorical variables whose joint law the two paths must share (magnitudes follow from them)."""
    policy = cifar10_policy()
    signs: list[Hashable] = []  # a sign is drawn only for an applied operation that has signed magnitudes
    for k, applied, negative in zip(d.policy.tolist(), d.applied.tolist(), d.negative.tolist(), strict=True):
        for slot in (0, 1):
            if applied[slot] and TV._AUGMENTATION_SPACE[policy[k][slot][0]][1]:
                signs.append((k, slot, negative[slot]))
    return {
        "crop": list(zip(d.top.tolist(), d.left.tolist(), strict=True)),
        "flip": d.flip.tolist(),
        "sub-policy and coins": [(k, a, b) for k, (a, b) in zip(d.policy.tolist(), d.applied.tolist(), strict=True)],
        "signs": signs,
        "cutout row": d.cy.tolist(),
        "cutout column": d.cx.tolist(),
    }


def _p_value(a: list[Hashable], b: list[Hashable]) -> float:
    """Chi-square test that two samples come from one categorical law; rare categories pooled (expected < 5)."""
    ca, cb = Counter(a), Counter(b)
    total_a, total_b = sum(ca.values()), sum(cb.values())
    cells, rare = [], [0, 0]
    for key in set(ca) | set(cb):
        pair = [ca[key], cb[key]]
        if min(total_a, total_b) * sum(pair) / (total_a + total_b) < 5:
            rare = [rare[0] + pair[0], rare[1] + pair[1]]
        else:
            cells.append(pair)
    if sum(rare):
        cells.append(rare)
    if len(cells) < 2:
        return 1.0
    return float(chi2_contingency(torch.tensor(cells).T.tolist())[1])


def _divergent(batch: Draws, reference: Families) -> list[str]:
    ours = _families(batch)
    return [name for name in ours if _p_value(ours[name], reference[name]) < ALPHA]


@pytest.fixture(scope="module")
def reference() -> Families:
    """SAMPLES draws of the per-sample path (proved equal to torchvision's above), seed fixed."""
    state = torch.get_rng_state()
    torch.manual_seed(20_261_130)
    try:
        return _families(per_sample_draws(SAMPLES, RECIPE, cifar10_policy(), 32, 32))
    finally:
        torch.set_rng_state(state)


def _batch_draws(augment: BatchAugment, seed: int = 7) -> Draws:
    return augment.draw(SAMPLES, torch.Generator().manual_seed(seed))


def test_batch_and_per_sample_paths_draw_the_same_distribution(reference: Families) -> None:
    augment = BatchAugment.from_settings(RECIPE, SIZE, MEAN, STD)
    assert _divergent(_batch_draws(augment), reference) == []


def _changed_policy(k: int, slot: int, probability: float) -> list[SubPolicy]:
    policy = cifar10_policy()
    op = policy[k][slot]
    changed = (op[0], probability, op[2])
    policy[k] = (changed, policy[k][1]) if slot == 0 else (policy[k][0], changed)
    return policy


class _BiasedSigns(BatchAugment):
    """A mutant that negates magnitudes with probability 0.6."""

    def draw(self, n: int, generator: torch.Generator | None = None) -> Draws:
        draws = super().draw(n, generator)
        return Draws(**{**draws.__dict__, "negative": torch.rand(n, 2, generator=generator) < 0.6})


class _ShiftedCutout(BatchAugment):
    """A mutant whose Cutout rows are drawn from 1..H-1 with row 0 never chosen."""

    def draw(self, n: int, generator: torch.Generator | None = None) -> Draws:
        draws = super().draw(n, generator)
        return Draws(**{**draws.__dict__, "cy": draws.cy.clamp(min=1)})


def _mutant(cls: type[BatchAugment] = BatchAugment, **changes: Any) -> Callable[[], BatchAugment]:
    """A builder of the recipe's batch augmentation with some of its parameters changed."""
    recipe: dict[str, Any] = {"crop_padding": 4, "hflip": 0.5, "policy": cifar10_policy(), "cutout": 16}
    return lambda: cls(SIZE, MEAN, STD, **{**recipe, **changes})


MUTANTS: dict[str, tuple[Callable[[], BatchAugment], str]] = {
    "flip probability 0.6": (_mutant(hflip=0.6), "flip"),
    "crop padding 3": (_mutant(crop_padding=3), "crop"),
    "ImageNet policy table": (
        _mutant(policy=v2.AutoAugment(v2.AutoAugmentPolicy.IMAGENET)._policies),
        "sub-policy and coins",
    ),
    "one probability 0.7 -> 0.4": (_mutant(policy=_changed_policy(1, 0, 0.4)), "sub-policy and coins"),
    "negative sign with probability 0.6": (_mutant(_BiasedSigns), "signs"),
    "cutout centre never on row 0": (_mutant(_ShiftedCutout), "cutout row"),
}


@pytest.mark.parametrize("mutant", list(MUTANTS))
def test_the_statistical_test_catches_a_wrong_distribution(mutant: str, reference: Families) -> None:
    build, family = MUTANTS[mutant]
    assert family in _divergent(_batch_draws(build()), reference)
