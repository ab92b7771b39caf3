"""Generated image trees for the image-file datasets: small JPEGs, and trees in a benchmark's official list format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from bagmar_cli.data.sources.benchmarks import get_benchmark


def write_jpeg(path: Path, seed: int, size: tuple[int, int] = (48, 40)) -> None:
    """A small noisy RGB JPEG whose mean colour depends on `seed` (so that classes differ a little)."""
    rng = np.random.default_rng(seed)
    base = np.array([seed * 37 % 256, seed * 91 % 256, seed * 53 % 256], dtype=np.float64)
    pixels = np.clip(base + rng.normal(0, 40, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, quality=90)


def benchmark_image_path(name: str, split: str, c: int, i: int) -> str:
    """Where the official lists of benchmark `name` put image `i` of class `c` in `split` (relative to --root)."""
    if name == "imagenet_lt":
        wnid = f"n{c:08d}"
        return f"val/{wnid}/ILSVRC2012_val_{c:08d}.JPEG" if split == "test" else f"train/{wnid}/{wnid}_{split}{i}.JPEG"
    if name == "inat2018":
        return f"train_val2018/Plantae/{c}/{split}{i}.jpg"
    return f"val/cat{c}/Places365_val_{c:08d}.jpg" if split == "test" else f"train/cat{c}/{split}{i:08d}.jpg"


def benchmark_jpeg_tree(
    name: str, root: Path, splits: Path, *, train_per_class: tuple[int, ...] = (2, 1), eval_every: int = 25
) -> dict[str, list[tuple[str, int]]]:
    """Real JPEGs under `root` and the official list files in `splits` for benchmark `name`: every class in train
    (train_per_class[c % len] images), every `eval_every`-th class with one image in each other split.
    Returns split -> [(relative path, label)] as listed."""
    bench = get_benchmark(name)
    listed: dict[str, list[tuple[str, int]]] = {}
    for split, file in bench.lists.items():
        rows = [
            (benchmark_image_path(name, split, c, i), c)
            for c in range(bench.num_classes)
            if split == "train" or c % eval_every == 0
            for i in range(train_per_class[c % len(train_per_class)] if split == "train" else 1)
        ]
        splits.mkdir(parents=True, exist_ok=True)
        (splits / file).write_text("".join(f"{path} {label}\n" for path, label in rows))
        for path, label in rows:
            write_jpeg(root / path, seed=label % 7, size=(20, 16))
        listed[split] = rows
    return listed
