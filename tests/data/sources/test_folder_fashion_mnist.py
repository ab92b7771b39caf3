"""Real data through the folder path: Fashion-MNIST written out as PNG folders and prepared with `prepare folder`
selects exactly the images `prepare fashion_mnist` selects at the same imbalance and seed.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bagmar_cli.data import load_manifest, load_split, prepare_dataset, prepare_folder
from bagmar_cli.data.sources.fashion_mnist import CLASSES, SYSTEM_DIR, load_fashion_mnist

pytestmark = [
    pytest.mark.slow,  # about 30 s: 70,000 PNG files written and read
    pytest.mark.skipif(
        not SYSTEM_DIR.is_dir(), reason=f"{SYSTEM_DIR} is absent (apt-get install dataset-fashion-mnist)"
    ),
]


def _folder(label: int) -> str:
    """A folder name per class that sorts in label order ("T-shirt/top" cannot be a folder name)."""
    return f"{label}_{CLASSES[label].replace('/', '-')}"


@pytest.fixture(scope="module")
def png_tree(tmp_path_factory) -> Path:
    """ROOT/{train,test}/<class>/<index>.png, the index zero-padded so that name order is the original order."""
    data = load_fashion_mnist(None)
    root = tmp_path_factory.mktemp("fmnist-png")
    splits = {"train": (data.train_images, data.train_labels), "test": (data.test_images, data.test_labels)}
    for split, (images, labels) in splits.items():
        for label in range(len(CLASSES)):
            (root / split / _folder(label)).mkdir(parents=True)
        for index, (image, label) in enumerate(zip(images, labels, strict=True)):
            Image.fromarray(image[0]).save(root / split / _folder(int(label)) / f"{index:05d}.png", compress_level=0)
    return root


def _digests_of_tensors(images) -> Counter:
    return Counter(hashlib.sha256(image.numpy().tobytes()).hexdigest() for image in images)


def _digests_of_list(root: Path, list_file: Path) -> Counter:
    paths = [line.rsplit(" ", 1)[0] for line in list_file.read_text().splitlines()]
    return Counter(hashlib.sha256(np.asarray(Image.open(root / p)).tobytes()).hexdigest() for p in paths)


@pytest.mark.parametrize(("imb", "seed", "val_per_class"), [(100, 0, 0), (10, 3, 20)])
def test_prepare_folder_on_fashion_mnist_pngs_selects_what_prepare_fashion_mnist_selects(
    png_tree, tmp_path, imb, seed, val_per_class
):
    tensors = prepare_dataset("fashion_mnist", imb=imb, seed=seed, val_per_class=val_per_class, out=tmp_path / "t")
    folder = prepare_folder(root=png_tree, imb=imb, seed=seed, val_per_class=val_per_class, out=tmp_path / "f")
    expected, found = load_manifest(tensors), load_manifest(folder)
    assert set(found.splits) == set(expected.splits)
    for split in expected.splits:
        assert found.splits[split].counts == expected.splits[split].counts, split
    for split in ("train", "val") if val_per_class else ("train",):
        images, _ = load_split(tensors, split)
        assert _digests_of_list(png_tree, folder / f"{split}.txt") == _digests_of_tensors(images), split
