"""What `prepare folder` measures on a training split's images: their size (read from the file headers of a seeded
sample) and their per-channel mean and std (measured on a seeded sample decoded in threads)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from bagmar_cli.console import err, warn
from bagmar_cli.errors import DatasetError

STATS_SAMPLE = 5000  # images measured at most: the mean and std settle to about 3 decimals well before this
STATS_SIDE = 256  # JPEGs are decoded at a reduced scale that keeps both sides >= this (evaluation resizes to 256)
SIZE_SAMPLE = 1000  # images whose size is read (headers only): enough for the median of a folder of mixed sizes
SMALL_SIDE = 64  # images whose stored longer side is at most this are padded and cropped, not random-resized-cropped


@dataclass(frozen=True)
class ChannelStats:
    """Per-channel mean and std on [0, 1], and how many images they were measured on (and failed to decode)."""

    mean: list[float]
    std: list[float]
    measured: int
    failed: int


def measure_stats(root: Path, paths: Sequence[str], *, sample: int = STATS_SAMPLE, seed: int = 0) -> ChannelStats:
    """Mean and std of the RGB pixels of (a seeded sample of at most `sample` of) the images `paths` under `root`.

    Every pixel of every measured image counts once. Images that fail to decode are skipped with a warning;
    DatasetError when none decodes or a channel does not vary (a std of 0 cannot normalise).
    """
    chosen = _sample(len(paths), sample, seed)
    sums = np.zeros(7)  # pixels, then per channel sum and sum of squares
    failed: list[str] = []
    columns = (TextColumn("measuring mean/std"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err, transient=True) as bar, ThreadPoolExecutor(_workers()) as pool:
        task = bar.add_task("stats", total=len(chosen))
        for index, moments in zip(chosen, pool.map(lambda i: _moments(Path(root) / paths[i]), chosen), strict=True):
            if moments is None:
                failed.append(paths[index])
            else:
                sums += moments
            bar.advance(task)
    return _finish(sums, len(chosen) - len(failed), failed)


def is_small(native_size: Sequence[int] | None) -> bool:
    """Whether images stored at `native_size` ([H, W], the manifest's) are trained with the pad-and-crop of small
    images (`data.augment.images`); None (a benchmark's or an older manifest's: not read) keeps the resized crop."""
    return native_size is not None and max(native_size) <= SMALL_SIDE


def measure_size(root: Path, paths: Sequence[str], *, sample: int = SIZE_SAMPLE, seed: int = 0) -> list[int] | None:
    """The median [height, width] of (a seeded sample of at most `sample` of) the images `paths` under `root`, read
    from their headers (nothing is decoded); None when no file's header can be read."""
    chosen = _sample(len(paths), sample, seed)
    with ThreadPoolExecutor(_workers()) as pool:
        sizes = [size for size in pool.map(lambda i: _size(Path(root) / paths[i]), chosen) if size is not None]
    if not sizes:
        return None
    median: list[int] = np.median(np.asarray(sizes), axis=0).round().astype(int).tolist()
    return median


def _size(path: Path) -> tuple[int, int] | None:
    """(height, width) from the file's header; None when it is not an image PIL can open."""
    try:
        with Image.open(path) as image:
            width, height = image.size
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    return height, width


def _sample(n: int, sample: int, seed: int) -> list[int]:
    """Indices of the images to measure: all of them, or `sample` drawn without replacement by `seed`, sorted."""
    if n <= sample:
        return list(range(n))
    chosen: list[int] = np.sort(np.random.default_rng(seed).choice(n, size=sample, replace=False)).tolist()
    return chosen


def _workers() -> int:
    """Decoding threads: PIL releases the GIL while it decodes, so threads use the cores."""
    return max(1, min(8, os.cpu_count() or 1))


def _moments(path: Path) -> np.ndarray | None:
    """[pixels, sum R, G, B, sum of squares R, G, B] of one image on [0, 1]; None when it does not decode."""
    try:
        with Image.open(path) as image:
            image.draft("RGB", (STATS_SIDE, STATS_SIDE))
            pixels = np.asarray(image.convert("RGB"), dtype=np.float64).reshape(-1, 3) / 255.0
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    return np.concatenate([[len(pixels)], pixels.sum(0), np.einsum("ij,ij->j", pixels, pixels)])


def _finish(sums: np.ndarray, measured: int, failed: list[str]) -> ChannelStats:
    """The mean and std from the summed moments; warns about (and errors on all) undecodable images."""
    if failed:
        warn(f"{len(failed)} images could not be decoded and were left out of the mean/std (e.g. {failed[0]})")
    if not measured:
        raise DatasetError("`measure_stats`: none of the training images could be decoded")
    n, total, squares = sums[0], sums[1:4], sums[4:7]
    mean = total / n
    std = np.sqrt(np.maximum(squares / n - mean**2, 0.0))
    flat = [c for c in range(3) if not std[c] > 1e-6 or not math.isfinite(std[c])]
    if flat:
        raise DatasetError(
            f"`measure_stats`: channel {flat[0]} has the same value in every measured pixel (std 0); "
            "normalising by it is impossible, leave out `measure_stats` to use ImageNet's mean and std"
        )
    return ChannelStats([round(float(m), 6) for m in mean], [round(float(s), 6) for s in std], measured, len(failed))
