"""Decoded-and-augmented training images per second for image-file datasets: bagmar's loader against the authors'.

The large-scale training pipeline (RandomResizedCrop 224, flip, RandAugment rand-n2-m10-mstd0.5, ColorJitter 0.4,
ToTensor, Normalize; timm's implementations) on generated ImageNet-sized JPEGs (500x375, quality 90), fed three ways
through `ImageListDataset` and a DataLoader (batch 32) at each worker count:

1. `authors`: what the authors' pipeline does: PIL decode, ToTensor, reflect pad by 4, back to PIL, then the same
   augmentation (timm's RandomResizedCrop and the rest);
2. `bagmar no-draft`: `image_train_transform` with draft mode off (no round trip through a padded float tensor;
   the crop resized straight from the decoded image);
3. `bagmar`: `image_train_transform` as training uses it: the crop box drawn first, JPEGs decoded at the reduced
   scale (1/2, 1/4, 1/8) that keeps the box at >= 224 pixels;
4. `bagmar uint8`: the same with uint8 samples (`normalize=False`), each batch normalised by `normalize_uint8` in the
   main process (counted): a quarter of the bytes through the worker queues.

Each (pipeline, worker count) gets one untimed pass (workers start and persist), then one timed pass over every file.
Pipelines take turns within a round, so that passing load hits them alike; `--rounds` rounds, medians reported. Rates:
images per wall-clock second, that divided by the cores the pipeline keeps busy (max(1, workers)), and images per
CPU-second (the main process and its workers, from /proc), which other processes on the machine move least.
JSON on stdout, a table on stderr; the thread count, cores and load average are stated in both.

    python benchmarks/loader.py [--files 300] [--workers 0,1,2] [--rounds 3] [--batch 32]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from rich.table import Table
from torch import Tensor
from torch.nn import functional
from torch.utils.data import DataLoader
from torchvision import transforms

from bagmar_cli.console import info, result, show
from bagmar_cli.data.augment.images import TrainTransform, image_train_transform, normalize_uint8
from bagmar_cli.data.images import EvalPreprocess, ImageListDataset, collate_skipping
from bagmar_cli.settings import DataSettings

SIZE = (500, 375)  # a typical ImageNet photo (--size changes it: iNaturalist 2018's are at most 800 on a side)
RECIPE = DataSettings(color_jitter=0.4, randaugment="rand-n2-m10-mstd0.5")  # the authors' large-scale recipe
PIPELINES = ("authors", "bagmar no-draft", "bagmar", "bagmar uint8")


def write_jpegs(folder: Path, n: int, size: tuple[int, int] = SIZE, seed: int = 0) -> list[str]:
    """`n` JPEGs (quality 90) of smooth random colour fields with noise, like photos in file size."""
    rng = np.random.default_rng(seed)
    names = []
    for i in range(n):
        coarse = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize(size, Image.Resampling.BICUBIC)
        noisy = np.asarray(coarse, dtype=np.int16) + rng.normal(0, 12, (size[1], size[0], 3)).astype(np.int16)
        names.append(f"{i:05d}.jpg")
        Image.fromarray(noisy.clip(0, 255).astype(np.uint8)).save(folder / names[-1], quality=90)
    return names


class ReflectPad:
    """The authors' padding of a [0, 1] float image tensor: reflect by `pad` pixels on every side."""

    def __init__(self, pad: int = 4) -> None:
        self.pad = pad

    def __call__(self, image: Tensor) -> Tensor:
        return functional.pad(image.unsqueeze(0), (self.pad,) * 4, mode="reflect").squeeze(0)


def transform_for(pipeline: str) -> Callable[[Image.Image], Tensor]:
    """The training transform of `pipeline`."""
    bagmar = image_train_transform(
        RECIPE, EvalPreprocess(), draft=pipeline != "bagmar no-draft", normalize=pipeline != "bagmar uint8"
    )
    if pipeline != "authors":
        return bagmar
    assert isinstance(bagmar, TrainTransform)
    *augment, _ = bagmar.rest.transforms  # flip, RandAugment, ColorJitter; then torchvision's ToTensor + Normalize
    pre = EvalPreprocess()
    return transforms.Compose(
        [transforms.ToTensor(), ReflectPad(4), transforms.ToPILImage(), bagmar.crop, *augment,
         transforms.ToTensor(), transforms.Normalize(pre.mean, pre.std)]
    )  # fmt: skip


def _normalize(images: Tensor) -> Tensor:
    pre = EvalPreprocess()
    return normalize_uint8(images, pre.mean, pre.std)


def _as_is(images: Tensor) -> Tensor:
    return images


def _one_thread(_: int) -> None:
    torch.set_num_threads(1)


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of the processes `pids` so far (Linux /proc)."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of the full line)
    return total / os.sysconf("SC_CLK_TCK")


def measure(loader: DataLoader, workers: int, finish: Callable[[Tensor], Tensor]) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, images) of one pass over `loader` after an untimed one that starts the workers.

    `finish` is applied to each batch's images in this process (normalisation of uint8 batches, else nothing).
    """
    for _ in loader:
        pass
    iterator = iter(loader)  # persistent workers: the same processes as the untimed pass
    pids = [os.getpid(), *[w.pid for w in getattr(iterator, "_workers", [])][:workers]]
    cpu, start = _cpu_seconds(pids), time.perf_counter()
    images = sum(len(finish(batch.images)) for batch in iterator)
    return time.perf_counter() - start, _cpu_seconds(pids) - cpu, images


def loader_for(root: Path, names: list[str], pipeline: str, workers: int, batch: int) -> DataLoader:
    dataset = ImageListDataset(root, names, [0] * len(names), transform_for(pipeline))
    return DataLoader(
        dataset, batch_size=batch, shuffle=True, num_workers=workers, collate_fn=collate_skipping,
        persistent_workers=workers > 0, worker_init_fn=_one_thread, generator=torch.Generator().manual_seed(0),
    )  # fmt: skip


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(1)
    load_before = os.getloadavg()
    samples: dict[tuple[str, int], list[tuple[float, float, int]]] = {}
    with tempfile.TemporaryDirectory(prefix="bagmar-loader-") as tmp:
        names = write_jpegs(Path(tmp), args.files, args.size)
        info(f"{len(names)} JPEGs {args.size[0]}x{args.size[1]} written; {args.rounds} rounds, workers {args.workers}")
        for round_ in range(args.rounds):
            for workers in args.workers:
                for pipeline in PIPELINES:
                    loader = loader_for(Path(tmp), names, pipeline, workers, args.batch)
                    finish = _normalize if pipeline == "bagmar uint8" else _as_is
                    samples.setdefault((pipeline, workers), []).append(measure(loader, workers, finish))
                    del loader
            info(f"round {round_ + 1} done (load average {os.getloadavg()[0]:.1f})")
    rows = [_row(pipeline, workers, runs) for (pipeline, workers), runs in samples.items()]
    authors = {row["workers"]: row for row in rows if row["pipeline"] == "authors"}
    for row in rows:
        base = authors[row["workers"]]
        row["per_core_vs_authors"] = round(row["images_per_s_per_core"] / base["images_per_s_per_core"], 2)
        row["per_cpu_s_vs_authors"] = round(row["images_per_cpu_s"] / base["images_per_cpu_s"], 2)
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "threads": 1,
        "cores": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "files": args.files,
        "size": list(args.size),
        "batch": args.batch,
        "rounds": args.rounds,
        "recipe": "RandomResizedCrop 224, hflip, rand-n2-m10-mstd0.5, ColorJitter 0.4, Normalize",
        "rows": rows,
    }


def _row(pipeline: str, workers: int, runs: list[tuple[float, float, int]]) -> dict[str, Any]:
    """Median rates over the rounds of one (pipeline, worker count)."""
    rate = statistics.median(images / wall for wall, _, images in runs)
    per_cpu = statistics.median(images / cpu for _, cpu, images in runs)
    return {
        "pipeline": pipeline,
        "workers": workers,
        "images_per_s": round(rate, 1),
        "images_per_s_per_core": round(rate / max(1, workers), 1),
        "images_per_cpu_s": round(per_cpu, 1),
        "rounds": [round(images / wall, 1) for wall, _, images in runs],
    }


def table(report: dict[str, Any]) -> Table:
    """The rows as a table; the × columns are ratios to the authors' pipeline at the same worker count."""
    title = (
        f"decoded + augmented images/s, {report['files']} JPEGs {report['size'][0]}x{report['size'][1]}, "
        f"--threads 1, {report['cores']} cores, load average {report['load_average_before'][0]} -> "
        f"{report['load_average_after'][0]}, median of {report['rounds']}"
    )
    out = Table(title=title)
    for column in ("pipeline", "workers", "img/s", "per core", "per CPU-s", "core ×", "CPU-s ×"):
        out.add_column(column, justify="left" if column == "pipeline" else "right")
    for row in report["rows"]:
        out.add_row(
            row["pipeline"], str(row["workers"]), f"{row['images_per_s']:.0f}", f"{row['images_per_s_per_core']:.0f}",
            f"{row['images_per_cpu_s']:.0f}", f"{row['per_core_vs_authors']:.2f}", f"{row['per_cpu_s_vs_authors']:.2f}",
        )  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=300, help="JPEGs generated (one timed pass over all of them)")
    parser.add_argument("--workers", default="0,1,2", help="comma-separated DataLoader worker counts")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; medians are reported")
    parser.add_argument("--batch", type=int, default=32, help="batch size")
    parser.add_argument("--size", default="500x375", help="WIDTHxHEIGHT of the generated JPEGs")
    args = parser.parse_args()
    args.size = tuple(int(side) for side in args.size.lower().split("x"))
    args.workers = [int(w) for w in args.workers.split(",")]
    report = run(args)
    show(table(report))
    result(json.dumps(report))


if __name__ == "__main__":
    main()
