"""ImageListDataset: decodes JPEG and PNG files as RGB in DataLoader workers; bad files are skipped and counted."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pydantic import ValidationError
from torch.utils.data import DataLoader

from bagmar_cli.data.images import EvalPreprocess, ImageListDataset, Undecodable, collate_skipping


def _save(path: Path, colour: tuple[int, int, int], size=(40, 30), mode="RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, colour if mode == "RGB" else colour[0]).save(path)


@pytest.fixture
def tree(tmp_path) -> tuple[Path, list[str], list[int]]:
    """Good JPEG/PNG/grey images, an undecodable file and a truncated JPEG."""
    _save(tmp_path / "a" / "red.jpg", (250, 0, 0))
    _save(tmp_path / "a" / "red.png", (250, 0, 0), size=(17, 23))
    _save(tmp_path / "b" / "grey.png", (100, 0, 0), mode="L")
    (tmp_path / "b" / "not-an-image.jpg").write_bytes(b"hello, I am text")
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buffer, "JPEG")
    (tmp_path / "b" / "truncated.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    paths = ["a/red.jpg", "a/red.png", "b/grey.png", "b/not-an-image.jpg", "b/truncated.jpg"]
    return tmp_path, paths, [0, 0, 1, 1, 1]


def test_items_are_rgb_images_with_their_labels(tree):
    root, paths, labels = tree
    dataset = ImageListDataset(root, paths, labels)
    image, label = dataset[2]
    assert image.mode == "RGB" and image.size == (40, 30) and label == 1
    assert np.asarray(image)[0, 0].tolist() == [100, 100, 100]
    assert len(dataset) == 5


@pytest.mark.parametrize(("index", "reason"), [(3, "cannot identify image file"), (4, "truncated")])
def test_undecodable_files_give_a_marker_with_their_path(tree, index, reason):
    root, paths, labels = tree
    item = ImageListDataset(root, paths, labels)[index]
    assert isinstance(item, Undecodable) and item.path == str(root / paths[index]) and reason in item.reason


def test_a_missing_file_is_a_marker_too(tree):
    root, _, _ = tree
    item = ImageListDataset(root, ["a/gone.jpg"], [0])[0]
    assert isinstance(item, Undecodable) and "gone.jpg" in item.path


def test_dataloader_workers_skip_and_count_the_bad_images(tree):
    root, paths, labels = tree
    transform = EvalPreprocess(resize=16, crop=8).transform()
    dataset = ImageListDataset(root, paths, labels, transform)
    loader = DataLoader(dataset, batch_size=5, num_workers=2, collate_fn=collate_skipping)
    (batch,) = list(loader)
    assert batch.images.shape == (3, 3, 8, 8) and batch.images.dtype == torch.float32
    assert batch.labels.tolist() == [0, 0, 1]
    assert sorted(Path(f.path).name for f in batch.failed) == ["not-an-image.jpg", "truncated.jpg"]


def test_a_batch_of_only_bad_images_is_empty_not_an_error(tree):
    root, paths, labels = tree
    batch = collate_skipping([ImageListDataset(root, paths, labels)[3]])
    assert batch.images.numel() == 0 and batch.labels.tolist() == [] and len(batch.failed) == 1


def test_eval_preprocessing_resizes_the_shorter_side_crops_and_normalises():
    image = Image.new("RGB", (500, 375), (255, 128, 0))
    pre = EvalPreprocess()
    out = pre.transform()(image)
    assert out.shape == (3, 224, 224)
    expected = (torch.tensor([255, 128, 0]) / 255 - torch.tensor(pre.mean)) / torch.tensor(pre.std)
    assert torch.allclose(out.mean(dim=(1, 2)), expected, atol=1e-4)
    assert pre.model_dump() == {
        "resize": 256, "crop": 224, "interpolation": "bilinear",
        "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
    }  # fmt: skip
    assert EvalPreprocess.model_validate_json(pre.model_dump_json()) == pre


def test_eval_preprocessing_crops_the_center():
    pixels = np.zeros((300, 300, 3), dtype=np.uint8)
    pixels[100:200, 100:200] = 255  # a white centre square on black
    out = EvalPreprocess(resize=300, crop=100, mean=[0, 0, 0], std=[1, 1, 1]).transform()(Image.fromarray(pixels))
    assert out.shape == (3, 100, 100) and torch.all(out == 1)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"crop": 300}, "crop 300 is larger than the resized shorter side 256"),
        ({"mean": [0.5]}, "mean has 1 values but std 3"),
        ({"std": [1, 0, 1]}, "greater than 0"),
        ({"interpolation": "lanczos"}, "interpolation"),
        ({"colour": 1}, "Extra inputs are not permitted"),
    ],
)
def test_bad_eval_preprocessing_is_refused(fields, message):
    with pytest.raises(ValidationError, match=message):
        EvalPreprocess(**fields)
