"""image_train_transform: shape, dtype and normalisation; each setting switches its part; draft-mode decoding draws
the same crop boxes as a full decode and gives nearly the same pixels."""

from __future__ import annotations

import io
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from timm.data.auto_augment import RandAugment
from torchvision import transforms

from bagmar_cli.data.augment.images import PadCropTransform, TrainTransform, image_train_transform, normalize_uint8
from bagmar_cli.data.images import EvalPreprocess, ImageListDataset, Undecodable
from bagmar_cli.settings import DataSettings

PLAIN = DataSettings(random_crop=False, hflip=False, color_jitter=0.0, randaugment=None)
SMALL = EvalPreprocess(resize=80, crop=64)


def build(data: DataSettings = PLAIN, preprocess: EvalPreprocess = SMALL, draft: bool = True) -> TrainTransform:
    transform = image_train_transform(data, preprocess, draft=draft)
    assert isinstance(transform, TrainTransform)
    return transform


def halves(size=(120, 90)) -> Image.Image:
    """Left half red, right half blue."""
    array = np.zeros((size[1], size[0], 3), dtype=np.uint8)
    array[:, : size[0] // 2, 0] = 255
    array[:, size[0] // 2 :, 2] = 255
    return Image.fromarray(array)


def smooth_jpeg(path: Path, size=(1600, 1200)) -> Path:
    """A photo-like JPEG: a smooth random colour field, quality 95."""
    coarse = np.random.default_rng(0).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    Image.fromarray(coarse).resize(size, Image.Resampling.BICUBIC).save(path, quality=95)
    return path


def test_output_is_a_normalised_float32_square_of_the_crop_size():
    colour = (200, 100, 50)
    out = build()(Image.new("RGB", (120, 90), colour))
    assert out.shape == (3, 64, 64) and out.dtype == torch.float32 and out.is_contiguous()
    expected = (torch.tensor(colour) / 255 - torch.tensor(SMALL.mean)) / torch.tensor(SMALL.std)
    torch.testing.assert_close(out.mean((1, 2)), expected, atol=1e-5, rtol=0)
    assert float(out.std((1, 2)).max()) < 1e-5


def test_the_normalisation_is_the_preprocess_one_and_matches_torchvision():
    pre = EvalPreprocess(resize=80, crop=64, mean=[0.5, 0.25, 0.0], std=[0.5, 0.25, 1.0])
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    reference = transforms.Normalize(pre.mean, pre.std)(transforms.ToTensor()(image))
    torch.testing.assert_close(build(preprocess=pre)(image), reference, atol=1e-5, rtol=0)


def test_without_random_crop_the_largest_central_square_is_resized_every_time():
    transform = build()
    image = halves((120, 90))  # central square: columns 15..104, half red half blue
    outputs = [transform(image) for _ in range(5)]
    assert all(torch.equal(outputs[0], out) for out in outputs)
    assert outputs[0][0, :, :30].mean() > outputs[0][0, :, 34:].mean()  # red on the left


def test_random_crop_and_flip_switch_on_and_off():
    image = halves()
    random.seed(0)
    flipped = {
        bool(build(DataSettings(**{**PLAIN.model_dump(), "hflip": True}))(image)[0, 0, 0] < 0) for _ in range(30)
    }
    assert flipped == {False, True}  # the red half is sometimes on the right
    cropped = build(DataSettings(**{**PLAIN.model_dump(), "random_crop": True}))
    assert len({cropped(image).sum().item() for _ in range(10)}) > 1


def test_color_jitter_and_randaugment_switch_on_and_off():
    grey = Image.new("RGB", (100, 100), (120, 120, 120))
    jitter = build(DataSettings(**{**PLAIN.model_dump(), "color_jitter": 0.4}))
    assert len({round(jitter(grey).mean().item(), 4) for _ in range(10)}) > 1
    assert any(isinstance(step, transforms.ColorJitter) for step in jitter.rest.transforms)
    assert not any(isinstance(step, (transforms.ColorJitter, RandAugment)) for step in build().rest.transforms)
    recipe = build(DataSettings(color_jitter=0.4, randaugment="rand-n2-m10-mstd0.5"), EvalPreprocess())
    kinds = [type(step) for step in recipe.rest.transforms]
    assert RandAugment in kinds and transforms.ColorJitter in kinds  # both, as the authors' recipe has them
    ra = recipe.rest.transforms[kinds.index(RandAugment)]
    assert ra.num_layers == 2 and {op.magnitude for op in ra.ops} == {10} and ra.ops[0].magnitude_std == 0.5
    assert recipe(halves((500, 375))).shape == (3, 224, 224) and recipe.crop.scale == (0.08, 1.0)


@pytest.mark.parametrize(
    ("box", "factor"), [((447, 900), 1.0), ((448, 448), 2.0), ((900, 1000), 4.0), ((1199, 1599), 4.0)]
)
def test_the_draft_factor_keeps_the_box_at_least_the_output_size(tmp_path, box, factor):
    transform = build(preprocess=EvalPreprocess())  # 224 output
    with Image.open(smooth_jpeg(tmp_path / "big.jpg")) as image:
        assert transform._draft(image, (0, 0, *box)) == factor
        assert image.size == (int(np.ceil(1600 / factor)), int(np.ceil(1200 / factor)))
        assert min(box) / factor >= 224


def test_a_file_format_without_draft_decodes_at_full_size(tmp_path):
    halves((1000, 1000)).save(tmp_path / "big.png")
    with Image.open(tmp_path / "big.png") as image:
        assert build(preprocess=EvalPreprocess())._draft(image, (0, 0, 900, 900)) == 1.0 and image.size == (1000, 1000)


def test_drafted_decoding_draws_the_same_boxes_and_nearly_the_same_crops(tmp_path):
    path = smooth_jpeg(tmp_path / "photo.jpg")
    data = DataSettings(**{**PLAIN.model_dump(), "random_crop": True})
    drafted, full = build(data, EvalPreprocess(), draft=True), build(data, EvalPreprocess(), draft=False)
    factors, diffs = [], []
    for seed in range(40):
        crops = []
        for transform in (drafted, full):
            random.seed(seed)
            with Image.open(path) as image:
                box = transform.draw_box(image)
                random.seed(seed)
                crops.append(np.asarray(transform.decode(image), dtype=np.float64))
                factors.append(1600 / image.size[0])
            assert crops[-1].shape == (224, 224, 3)
            random.seed(seed)
            assert transform.draw_box(Image.open(path)) == box  # the box depends on the seed and the full size only
        diffs.append(np.abs(crops[0] - crops[1]).mean())
    assert factors[1::2] == [1.0] * 40 and {2.0, 4.0} <= set(factors[::2])  # the draft path did reduce, often
    assert max(diffs) < 1.0, diffs  # mean absolute difference in 0..255 levels (about 0.3 measured)


def test_without_draft_the_crop_is_timm_random_resized_crop(tmp_path):
    path = smooth_jpeg(tmp_path / "photo.jpg", (500, 375))
    transform = build(DataSettings(**{**PLAIN.model_dump(), "random_crop": True}), EvalPreprocess(), draft=False)
    for seed in range(10):
        random.seed(seed)
        ours = np.asarray(transform.decode(Image.open(path)), dtype=np.float64)
        random.seed(seed)
        timm_crop = np.asarray(transform.crop(Image.open(path).convert("RGB")), dtype=np.float64)
        assert np.abs(ours - timm_crop).mean() < 1.0


def test_image_list_dataset_lets_the_transform_decode_and_still_marks_broken_files(tmp_path):
    smooth_jpeg(tmp_path / "good.jpg", (500, 375))
    buffer = io.BytesIO()
    Image.open(tmp_path / "good.jpg").save(buffer, "JPEG")
    (tmp_path / "cut.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    recipe = build(DataSettings(color_jitter=0.4, randaugment="rand-n2-m10-mstd0.5"), EvalPreprocess())
    dataset = ImageListDataset(tmp_path, ["good.jpg", "cut.jpg"], [3, 4], recipe)
    image, label = dataset[0]
    assert image.shape == (3, 224, 224) and image.dtype == torch.float32 and label == 3
    broken = dataset[1]
    assert isinstance(broken, Undecodable) and broken.path.endswith("cut.jpg") and "truncated" in broken.reason


def test_uint8_samples_normalised_per_batch_equal_the_float_samples():
    recipe = DataSettings(color_jitter=0.4, randaugment="rand-n2-m10-mstd0.5")
    pre = EvalPreprocess(resize=80, crop=64, mean=[0.5, 0.4, 0.3], std=[0.2, 0.3, 0.4])
    as_float, as_uint8 = build(recipe, pre), image_train_transform(recipe, pre, normalize=False)
    image = Image.fromarray(np.random.default_rng(2).integers(0, 256, (90, 120, 3), dtype=np.uint8))
    floats, uint8s = [], []
    for seed in range(4):
        for transform, out in ((as_float, floats), (as_uint8, uint8s)):
            random.seed(seed)
            np.random.seed(seed)  # timm's RandAugment picks its operations with numpy
            torch.manual_seed(seed)  # torchvision's flip and ColorJitter draw from torch
            out.append(transform(image))
    assert uint8s[0].dtype == torch.uint8 and uint8s[0].shape == (3, 64, 64)
    torch.testing.assert_close(normalize_uint8(torch.stack(uint8s), pre.mean, pre.std), torch.stack(floats))


# --- size-aware defaults (issue 24): small images are padded and cropped, large ones random-resized-cropped --------


def pattern(size: int = 28) -> Image.Image:
    """A grey image with a distinct value at every pixel (so a shift is identifiable), as a folder's PNG decodes."""
    values = (np.arange(size * size).reshape(size, size) * 7 % 251 + 5).astype(np.uint8)  # 5..255: never 0
    return Image.fromarray(values, mode="L")


def shifts(out: torch.Tensor, image: Image.Image, mean: float, std: float, most: int = 4) -> tuple[int, int] | None:
    """(dy, dx), each within `most` pixels, when `out` is `image` shifted by it with zeros (black) where the padding
    came in; else None."""
    pixels = np.asarray(image, dtype=np.float64)
    got = np.round((out[0].numpy() * std + mean) * 255)
    size = pixels.shape[0]
    for dy in range(-most, most + 1):
        for dx in range(-most, most + 1):
            shifted = np.zeros_like(pixels)
            ys, xs = slice(max(dy, 0), size + min(dy, 0)), slice(max(dx, 0), size + min(dx, 0))
            shifted[ys, xs] = pixels[max(-dy, 0) : size - max(dy, 0), max(-dx, 0) : size - max(dx, 0)]
            if np.abs(shifted - got).max() < 1:
                return dy, dx
    return None


def test_a_small_image_folder_trains_on_whole_images_shifted_by_the_padding_not_on_zoomed_crops():
    recipe = DataSettings(random_crop=True, crop_padding=2, hflip=False)  # the fashion_mnist_lt preset's crop
    pre = EvalPreprocess(resize=28, crop=28, mean=[0.5] * 3, std=[0.25] * 3)
    transform = image_train_transform(recipe, pre, native_size=[28, 28])
    assert isinstance(transform, PadCropTransform)
    image = pattern()
    torch.manual_seed(0)
    outputs = [transform(image) for _ in range(60)]
    assert all(out.shape == (3, 28, 28) and torch.equal(out[0], out[2]) for out in outputs)  # grey as 3 equal channels
    moves = {shifts(out, image, 0.5, 0.25) for out in outputs}
    assert None not in moves  # every sample is the whole image moved, never rescaled
    assert {dy for dy, _ in moves} == {dx for _, dx in moves} == {-2, -1, 0, 1, 2}  # by up to crop_padding pixels
    # the same settings on the same image with no recorded size (a benchmark's or an older manifest): zoomed crops
    resized = image_train_transform(recipe, pre)
    assert isinstance(resized, TrainTransform) and resized.crop.scale == (0.08, 1.0)
    random.seed(0)
    assert sum(shifts(resized(image), image, 0.5, 0.25) is None for _ in range(20)) >= 15


def test_padding_is_in_the_small_images_own_pixels_when_they_are_upscaled():
    pre = EvalPreprocess(resize=112, crop=112)
    transform = image_train_transform(DataSettings(crop_padding=2), pre, native_size=[28, 28])
    assert isinstance(transform, PadCropTransform) and transform.crop.padding == 8  # 2 pixels of 28, at 112
    assert transform(pattern()).shape == (3, 112, 112)
    centred = image_train_transform(DataSettings(random_crop=False, hflip=False), pre, native_size=[28, 28])
    assert isinstance(centred.crop, transforms.CenterCrop)  # no random crop: the whole image, resized, every time
    assert torch.equal(centred(pattern()), centred(pattern()))


@pytest.mark.parametrize(
    ("native", "small"), [([28, 28], True), ([64, 48], True), ([65, 64], False), ([375, 500], False)]
)
def test_images_up_to_64_pixels_are_small_and_large_recipes_keep_their_random_resized_crop(native, small):
    recipe = DataSettings(crop_scale_min=0.08, color_jitter=0.4, randaugment="rand-n2-m10-mstd0.5")  # imagenet_lt's
    transform = image_train_transform(recipe, EvalPreprocess(), native_size=native)
    assert isinstance(transform, PadCropTransform if small else TrainTransform)
    if not small:
        assert transform.crop.scale == (0.08, 1.0) and transform.crop.ratio == (3 / 4, 4 / 3)
    kinds = [type(step) for step in transform.rest.transforms]
    assert RandAugment in kinds and transforms.ColorJitter in kinds  # flip, jitter and RandAugment apply to both
