"""Time each registered loss adds to a training step over cross-entropy (forward + backward).

Cases: the classifier head alone (a Linear layer on random features) at C = 100, 1000 and 8142, and a
full ResNet-32 CIFAR step at C = 100. Losses are timed in interleaved rounds so that drifting machine
load hits them alike: the step time is the median over rounds, the overhead the median over rounds of
the difference to cross-entropy in the same round. Prints a markdown table to stdout.
One CPU thread by default: on a shared machine, OpenMP waits for a busy second core dominate otherwise.

glibc's malloc returns freed heap to the kernel once the top exceeds a trim threshold and mmaps large
blocks afresh; which step pays the resulting page faults depends on the exact sequence of allocations,
not on the work a loss does (measured at C = 1000: 0 to 140 faults per step for the same loss from run
to run, up to 0.5 ms). `--allocator steady` (the default) keeps freed memory in the process for every
loss alike (mallopt: no trimming, mmap only above 32 MiB); `--allocator default` leaves glibc as it is.

    python benchmarks/loss_overhead.py [--quick] [--threads N] [--allocator steady|default]
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from bagmar_cli.console import info, result
from bagmar_cli.losses import build_loss, loss_names
from bagmar_cli.settings import LossSettings

Step = Callable[[nn.Module], None]


@dataclass(frozen=True)
class Case:
    name: str
    classes: int
    batch: int
    features: int = 0  # head width; 0: the full ResNet-32 step


CASES = (
    Case("head, Linear(64, C)", 100, 64, 64),
    Case("head, Linear(512, C)", 1000, 256, 512),
    Case("head, Linear(512, C)", 8142, 256, 512),
    Case("ResNet-32 step", 100, 64),
)


def long_tailed_counts(classes: int, imb: float = 100.0, largest: int = 500) -> list[int]:
    """Exponential long-tail counts, largest first, as the training manifests hold them."""
    return [max(1, round(largest * imb ** (-j / max(classes - 1, 1)))) for j in range(classes)]


def head_step(case: Case) -> Step:
    """One forward + backward of loss(Linear(features)) on fixed random features."""
    head = nn.Linear(case.features, case.classes)
    features = torch.randn(case.batch, case.features)
    labels = torch.randint(case.classes, (case.batch,))
    return _step(head, features, labels)


def resnet_step(case: Case) -> Step | None:
    """One forward + backward of the whole ResNet-32; None while bagmar_cli.models is not there."""
    try:
        import timm

        import bagmar_cli.models  # noqa: F401 (registers resnet32_cifar with timm)

        model = timm.create_model("resnet32_cifar", num_classes=case.classes)
    except (ImportError, RuntimeError) as exc:
        info(f"skipping the ResNet-32 row: {exc}")
        return None
    images = torch.randn(case.batch, 3, 32, 32)
    labels = torch.randint(case.classes, (case.batch,))
    return _step(model.train(), images, labels)


def _step(model: nn.Module, inputs: Tensor, labels: Tensor) -> Step:
    def step(loss_fn: nn.Module) -> None:
        model.zero_grad(set_to_none=True)
        loss_fn(model(inputs), labels).backward()

    return step


def seconds_per_step(step: Step, loss_fn: nn.Module, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        step(loss_fn)
    return (time.perf_counter() - start) / steps


def measure(step: Step, losses: dict[str, nn.Module], budget_s: float) -> dict[str, list[float]]:
    """Seconds per step of each loss, one sample per round; a round visits every loss, in rotating order."""
    for loss_fn in losses.values():
        seconds_per_step(step, loss_fn, 3)
    step_s = seconds_per_step(step, losses["ce"], 5)
    steps = max(1, round(0.005 / step_s))  # samples of about 5 ms
    rounds = min(500, max(7, round(budget_s / (len(losses) * steps * step_s))))
    names = list(losses)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            samples[name].append(seconds_per_step(step, losses[name], steps))
    return samples


def table_rows(case: Case, samples: dict[str, list[float]]) -> list[str]:
    """Median step time, and the median over rounds of the difference to CE in the same round."""
    base = statistics.median(samples["ce"])
    rows = []
    for name, times in samples.items():
        extra = statistics.median(t - c for t, c in zip(times, samples["ce"], strict=True))
        rows.append(
            f"| {case.name} | {case.classes} | {case.batch} | {name} | {statistics.median(times) * 1e3:.3f} | "
            f"{extra * 1e3:+.3f} | {100 * extra / base:+.1f} % |"
        )
    return rows


def steady_allocator() -> str:
    """Ask glibc's malloc to keep freed memory (no heap trimming, mmap only for blocks over 32 MiB)."""
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError, TypeError):
        return "default (no glibc mallopt here)"
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
    done = all(
        mallopt(option, value)
        for option, value in ((m_mmap_threshold, 32 << 20), (m_trim_threshold, 1 << 30), (m_top_pad, 64 << 20))
    )
    return "steady (glibc: no trimming, mmap above 32 MiB)" if done else "default (mallopt refused)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="about a quarter of the timing budget (noisier)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    parser.add_argument(
        "--allocator", choices=("steady", "default"), default="steady", help="glibc malloc tuning (see the docstring)"
    )
    args = parser.parse_args()
    allocator = steady_allocator() if args.allocator == "steady" else "default"
    budget_s = 3.0 if args.quick else 14.0  # per case, spread over all the losses
    if args.threads:
        torch.set_num_threads(args.threads)
    # LDAM's s = 30 on Linear logits drives exp() into denormals, whose slow x86 path would swamp
    # every other cost; a cosine head (LDAM's own) stays clear of them. Flushing keeps the timing fair.
    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    info(
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, allocator {allocator}, "
        f"about {budget_s:.0f} s per case"
    )
    result("| case | C | B | loss | step (ms) | over CE (ms) | over CE (% of CE) |")
    result("|---|---:|---:|---|---:|---:|---:|")
    for case in CASES:
        step = head_step(case) if case.features else resnet_step(case)
        if step is None:
            result(f"| {case.name} | {case.classes} | {case.batch} | skipped: bagmar_cli.models not available | | | |")
            continue
        counts = long_tailed_counts(case.classes)
        names = ["ce", *(name for name in loss_names() if name != "ce")]
        losses = {name: build_loss(LossSettings(name=name), counts) for name in names}
        info(f"timing {case.name}, C = {case.classes}, B = {case.batch}")
        for row in table_rows(case, measure(step, losses, budget_s)):
            result(row)


if __name__ == "__main__":
    main()
