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

from bagmar_cli.data.image_transforms import TrainTransform, image_train_transform, normalize_uint8
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
