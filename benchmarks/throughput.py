"""Training images per second for the CIFAR-100-LT recipe, five input pipelines side by side.

The `cifar100_lt` preset's step (ResNet-32, batch 64, SGD, the BaGMar loss) on CIFAR-shaped uint8 images generated in
memory (real CIFAR is not needed), fed four ways:

1. `bare`: no augmentation, cross-entropy, a normalised float batch already in memory: the ceiling;
2. `authors`: what the authors' code does: PIL images, torchvision's RandomCrop(32, 4), RandomHorizontalFlip,
   AutoAugment (CIFAR10 policy), ToTensor, Normalize and a Cutout(16) mask per sample in 4 DataLoader workers, fp32;
3. `per-sample`: bagmar's current path: `TensorImages` + `train_transform` in a DataLoader with `num_workers` 0;
4. `batch`: `BatchAugment` on the whole uint8 batch on the training device, then the same step;
5. `bagmar now`: the trainer's own path: `engine.batches.DeviceBatches` (the split on the device, the sampler's
   order, `BatchAugment`) into `engine.train.step.TrainStep` (no loss read per step), with `--precision`,
   `--channels-last` and `--compile` (which apply to this pipeline only; 1-4 stay fp32, NCHW, eager).

Each pipeline gets a fresh model with the same seed, `--warmup` untimed steps (DataLoader workers start there), then
`--steps` timed steps. The in-process pipelines (1, 3, 4) take their steps in turn, so that load from other processes
that comes and goes hits them alike; the authors' pipeline runs on its own after them (its workers would otherwise
prepare batches while the others are timed). All of it `--rounds` times, each pipeline's median reported. Beside
wall-clock images/s, two CPU costs that other processes move less: CPU ms per image of the training process over
the timed steps (its threads; DataLoader workers not counted), and of the input pipeline alone (the same batches
produced in this process with no model step; the authors' transforms without workers).
JSON on stdout, a table on stderr; the torch thread count and the load average are stated in both.

Each timed step ends with a device synchronisation (so that steps can be timed one by one); on a GPU that makes
pipeline 5 a lower bound of the trainer, whose loop never waits for the device between log intervals.

    python benchmarks/throughput.py [--threads N] [--steps 30] [--warmup 5] [--rounds 1] [--device cpu]
        [--precision fp32|bf16] [--channels-last] [--compile] [--only 1,4,5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import torch
from PIL import Image
from rich.table import Table
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as v1

from bagmar_cli.console import info, result, show
from bagmar_cli.data import lt_counts
from bagmar_cli.data.augment.batch import BatchAugment
from bagmar_cli.data.augment.tensors import TensorImages, train_transform
from bagmar_cli.engine.batches import DeviceBatches, EpochOrder
from bagmar_cli.engine.distributed import World
from bagmar_cli.engine.train.step import TrainStep, prepare_model
from bagmar_cli.losses import build_loss
from bagmar_cli.models import build_model
from bagmar_cli.settings import LossSettings, Settings, load_settings

SIZE = [3, 32, 32]
MEAN, STD = [0.5071, 0.4865, 0.4409], [0.2673, 0.2564, 0.2762]  # CIFAR-100's, as the manifest records them
Batches = Iterator[tuple[Tensor, Tensor]]


class AuthorsCutout:
    """The authors' Cutout (DeVries & Taylor's code): one length×length hole, clipped, on the normalised tensor."""

    def __init__(self, length: int) -> None:
        self.length = length

    def __call__(self, image: Tensor) -> Tensor:
        _, h, w = image.shape
        y, x = np.random.randint(h), np.random.randint(w)
        y1, y2 = np.clip(y - self.length // 2, 0, h), np.clip(y + self.length // 2, 0, h)
        x1, x2 = np.clip(x - self.length // 2, 0, w), np.clip(x + self.length // 2, 0, w)
        mask = torch.ones(h, w)
        mask[y1:y2, x1:x2] = 0.0
        return image * mask


class PilImages(Dataset):
    """uint8 HWC arrays turned into PIL images per access, as torchvision's CIFAR datasets do."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: Callable[[Image.Image], Tensor]) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self.transform(Image.fromarray(self.images[index])), int(self.labels[index])


def authors_batches(images: Tensor, labels: Tensor, batch: int, workers: int) -> Batches:
    transform = v1.Compose(
        [
            v1.RandomCrop(32, padding=4),
            v1.RandomHorizontalFlip(),
            v1.AutoAugment(v1.AutoAugmentPolicy.CIFAR10),
            v1.ToTensor(),
            v1.Normalize(MEAN, STD),
            AuthorsCutout(16),
        ]
    )
    dataset = PilImages(images.permute(0, 2, 3, 1).numpy(), labels.numpy(), transform)
    return iter(DataLoader(dataset, batch, shuffle=True, num_workers=workers, drop_last=True))


def per_sample_batches(settings: Settings, images: Tensor, labels: Tensor, batch: int) -> Batches:
    dataset = TensorImages(images, labels, train_transform(settings.data, SIZE, MEAN, STD))
    generator = torch.Generator().manual_seed(0)
    return iter(DataLoader(dataset, batch, shuffle=True, generator=generator, num_workers=0))


def batch_batches(settings: Settings, images: Tensor, labels: Tensor, batch: int, device: torch.device) -> Batches:
    augment = BatchAugment.from_settings(settings.data, SIZE, MEAN, STD)
    images, labels = images.to(device), labels.to(device)  # once, as the trainer will hold them
    generator = torch.Generator().manual_seed(0)
    order = torch.randperm(len(labels), generator=generator).to(device)
    for start in range(0, len(order) - batch + 1, batch):
        index = order[start : start + batch]
        yield augment(images[index], generator), labels[index]


def bare_batches(images: Tensor, labels: Tensor, batch: int, device: torch.device) -> Batches:
    normalised = ((images.float() / 255 - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]).to(
        device
    )
    labels = labels.to(device)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0)).to(device)
    for start in range(0, len(order) - batch + 1, batch):
        index = order[start : start + batch]
        yield normalised[index], labels[index]


@dataclass
class Timing:
    """One timed stretch: images, wall seconds, and CPU seconds of this process (all its threads, no workers)."""

    images: int = 0
    wall: float = 0.0
    cpu: float = 0.0

    def per_second(self) -> float:
        return self.images / self.wall

    def cpu_ms_per_image(self) -> float:
        return 1e3 * self.cpu / self.images


class Trainer:
    """The recipe's model, loss and SGD fed by one pipeline; `step` times one training step of it."""

    def __init__(self, settings: Settings, batches: Batches, loss: LossSettings, device: torch.device) -> None:
        torch.manual_seed(0)
        self.batches, self.device = batches, device
        self.model = build_model(settings.model, 100, 3).to(device).train()
        self.loss_fn: nn.Module = build_loss(loss, lt_counts(500, 100, 100.0, "exp")).to(device)
        self.optimizer = torch.optim.SGD(
            self.model.parameters(),
            lr=settings.optim.lr,
            momentum=settings.optim.momentum,
            weight_decay=settings.optim.weight_decay,
        )

    def step(self, timing: Timing | None) -> None:
        """Next batch, forward, backward, SGD step; reads the loss back as the trainer does. Adds to `timing`."""
        wall, cpu = time.perf_counter(), time.process_time()
        x, y = next(self.batches)
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        value = self.loss_fn(self.model(x), y)
        self.optimizer.zero_grad(set_to_none=True)
        value.backward()
        self.optimizer.step()
        value.item()
        _synchronize(self.device)
        if timing is not None:
            timing.images += len(y)
            timing.wall += time.perf_counter() - wall
            timing.cpu += time.process_time() - cpu


class StepTrainer(Trainer):
    """Pipeline 5: the same model, loss and SGD taken through bagmar's own `TrainStep` (no per-step loss read)."""

    def __init__(self, settings: Settings, batches: Batches, loss: LossSettings, device: torch.device) -> None:
        super().__init__(settings, batches, loss, device)
        prepare_model(self.model, settings.train)  # in place: the optimiser keeps the same parameters
        self.train_step = TrainStep(self.model, self.loss_fn, self.optimizer, settings.train, device)

    def step(self, timing: Timing | None) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        x, y = next(self.batches)
        self.train_step(x, y)
        _synchronize(self.device)
        if timing is not None:
            timing.images += len(y)
            timing.wall += time.perf_counter() - wall
            timing.cpu += time.process_time() - cpu


def bagmar_now_batches(settings: Settings, images: Tensor, labels: Tensor, device: torch.device) -> Batches:
    augment = BatchAugment.from_settings(settings.data, SIZE, MEAN, STD)
    order = EpochOrder(settings, labels, 100, World())
    return iter(DeviceBatches(images, labels, order, augment, device).epoch(0))


def train_round(
    settings: Settings, cases: list[Pipeline], args: argparse.Namespace, device: torch.device
) -> dict[str, Timing]:
    """One round: the in-process pipelines step by step in turn (so load that comes and goes hits them alike),
    then each pipeline with DataLoader workers on its own (its workers would otherwise run during the others)."""
    timings = {case.name: Timing() for case in cases}
    together = {
        case.name: case.trainer(case.settings or settings, case.batches(0), case.loss, device)
        for case in cases
        if not case.workers
    }
    for step in range(args.warmup + args.steps):
        for name, trainer in together.items():
            trainer.step(timings[name] if step >= args.warmup else None)
    for case in (case for case in cases if case.workers):
        trainer = Trainer(settings, case.batches(args.workers), case.loss, device)
        for step in range(args.warmup + args.steps):
            trainer.step(timings[case.name] if step >= args.warmup else None)
    return timings


def augmentation_only(batches: Batches, device: torch.device, *, steps: int) -> Timing:
    """The input pipeline alone in this process: `steps` batches produced and dropped, no model step."""
    timing = Timing(wall=-time.perf_counter(), cpu=-time.process_time())
    for _ in range(steps):
        _, y = next(batches)
        timing.images += len(y)
    _synchronize(device)
    timing.wall, timing.cpu = timing.wall + time.perf_counter(), timing.cpu + time.process_time()
    return timing


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass(frozen=True)
class Pipeline:
    name: str
    batches: Callable[[int], Batches]  # given a DataLoader worker count (used by the authors' pipeline only)
    loss: LossSettings
    workers: bool = False  # prepares batches in DataLoader worker processes
    trainer: type[Trainer] = Trainer  # how the step is taken
    settings: Settings | None = None  # the pipeline's own settings (the speed options), else the recipe's


def pipelines(args: argparse.Namespace, settings: Settings, device: torch.device) -> list[Pipeline]:
    """The five input pipelines (those --only names) over one set of generated CIFAR-shaped uint8 images."""
    batch, total = settings.train.batch_size, (args.warmup + args.steps) * settings.train.batch_size
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (total, *SIZE), dtype=torch.uint8, generator=generator)
    labels = torch.randint(100, (total,), generator=generator)
    bagmar, ce = settings.loss, LossSettings(name="ce")
    speed = [f"train.precision='{args.precision}'", f"train.channels_last={str(args.channels_last).lower()}"]
    now = load_settings("cifar100_lt", overrides=[*speed, f"train.compile={str(args.compile).lower()}"])
    options = f"{args.precision}{', channels-last' if args.channels_last else ''}{', compiled' if args.compile else ''}"
    cases = [
        Pipeline("bare step (no augmentation, CE)", lambda _: bare_batches(images, labels, batch, device), ce),
        Pipeline(
            f"authors' PIL ({args.workers} workers)",
            lambda workers: authors_batches(images, labels, batch, workers),
            bagmar,
            workers=True,
        ),
        Pipeline(
            "bagmar per-sample (0 workers)", lambda _: per_sample_batches(settings, images, labels, batch), bagmar
        ),
        Pipeline("bagmar batch augmentation", lambda _: batch_batches(settings, images, labels, batch, device), bagmar),
        Pipeline(
            f"bagmar now ({options})",
            lambda _: bagmar_now_batches(now, images, labels, device),
            bagmar,
            trainer=StepTrainer,
            settings=now,
        ),
    ]
    return [case for number, case in enumerate(cases, 1) if number in args.only]


def run(args: argparse.Namespace) -> dict[str, object]:
    torch.set_num_threads(args.threads)
    # the table states the worker count; torch's "more workers than CPUs" note would only repeat it
    warnings.filterwarnings("ignore", message="This DataLoader will create")
    device = torch.device(args.device)
    settings = load_settings("cifar100_lt")
    cases = pipelines(args, settings, device)
    runs: dict[str, list[Timing]] = {case.name: [] for case in cases}
    alone: dict[str, list[Timing]] = {case.name: [] for case in cases}
    for round_ in range(args.rounds):
        info(f"round {round_ + 1}/{args.rounds} ...")
        for name, timing in train_round(settings, cases, args, device).items():
            runs[name].append(timing)
        for case in cases:
            alone[case.name].append(augmentation_only(case.batches(0), device, steps=args.steps))
    ceiling = statistics.median(t.per_second() for t in runs[cases[0].name])  # pipeline 1 when run, else the first
    rows = []
    for case in cases:
        rate = statistics.median(t.per_second() for t in runs[case.name])
        rows.append(
            {
                "name": case.name,
                "images_per_s": round(rate, 1),
                "of_bare": round(rate / ceiling, 3),
                "rounds_images_per_s": [round(t.per_second(), 1) for t in runs[case.name]],
                "step_cpu_ms_per_image": round(statistics.median(t.cpu_ms_per_image() for t in runs[case.name]), 3),
                "input_alone_cpu_ms_per_image": round(
                    statistics.median(t.cpu_ms_per_image() for t in alone[case.name]), 3
                ),
            }
        )
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "device": str(device),
        "threads": args.threads,
        "cpus": _cpus(),
        "load_average": _load_average(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "batch": settings.train.batch_size,
        "steps": args.steps,
        "warmup": args.warmup,
        "rounds": args.rounds,
        "precision": args.precision,
        "channels_last": args.channels_last,
        "compile": args.compile,
        "pipelines": rows,
    }


def _load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else []


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 0


def table(report: dict[str, Any]) -> Table:
    title = (
        f"CIFAR-100-LT recipe step, ResNet-32, batch {report['batch']}, {report['device']}, "
        f"--threads {report['threads']} ({report['cpus']} CPUs, load average {report['load_average']}), "
        f"{report['steps']} steps after {report['warmup']}, median of {report['rounds']} round(s)"
    )
    out = Table(title=title)
    columns = ("pipeline", "images/s", "of bare", "train CPU ms/img", "input CPU ms/img")
    for column in columns:
        out.add_column(column, justify="left" if column == "pipeline" else "right")
    for row in report["pipelines"]:
        out.add_row(
            row["name"],
            f"{row['images_per_s']:.0f}",
            f"{row['of_bare']:.2f}",
            f"{row['step_cpu_ms_per_image']:.2f}",
            f"{row['input_alone_cpu_ms_per_image']:.3f}",
        )
    return out


def _numbers(text: str) -> list[int]:
    numbers = [int(part) for part in text.split(",")]
    if not numbers or not set(numbers) <= {1, 2, 3, 4, 5}:
        raise argparse.ArgumentTypeError("pipeline numbers from 1 to 5, comma-separated")
    return numbers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads (main process)")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per pipeline")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (worker start-up included)")
    parser.add_argument("--rounds", type=int, default=1, help="repeat all pipelines; report each one's median")
    parser.add_argument("--workers", type=int, default=4, help="DataLoader workers of the authors' pipeline")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help="pipeline 5's train.precision")
    parser.add_argument("--channels-last", action="store_true", help="pipeline 5's train.channels_last")
    parser.add_argument("--compile", action="store_true", help="pipeline 5's train.compile")
    parser.add_argument("--only", type=_numbers, default=[1, 2, 3, 4, 5], help="pipelines to run, e.g. 1,5")
    args = parser.parse_args()
    if min(args.threads, args.steps, args.rounds) < 1 or args.warmup < 0:
        parser.error("--threads, --steps and --rounds must be at least 1, --warmup at least 0")
    report = run(args)
    show(table(report))
    result(json.dumps(report))


if __name__ == "__main__":
    main()
