"""Speed of `bagmar compare`'s statistics: 50,000 images x 1,000 classes x 3 seeds a side, 2,000 resamples.

The issue's target is under 5 s on the development machine's CPU. Models are simulated: each seed's correctness is
a shared per-image difficulty plus noise, so the seeds agree on most images as trained models do.

    .venv/bin/python benchmarks/compare_speed.py [--images 50000] [--classes 1000] [--seeds 3] [--resamples 2000]
"""

from __future__ import annotations

import argparse
import time

import torch

from bagmar_cli.functional.paired import compare_correct


def simulated(images: int, classes: int, seeds: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    """Labels, long-tailed training counts, and (seeds, images) correctness for two sides of similar accuracy."""
    labels = torch.arange(images) % classes
    train_counts = (500 * (0.01 ** (torch.arange(classes) / (classes - 1)))).long().clamp_min(1)
    easy = torch.rand(images, generator=generator)
    sides = []
    for shift in (0.0, 0.02):
        noise = torch.rand(seeds, images, generator=generator)
        sides.append(0.7 * easy + 0.3 * noise > 0.45 + shift)
    return labels, train_counts, sides[0], sides[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--classes", type=int, default=1_000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--resamples", type=int, default=2_000)
    args = parser.parse_args()
    labels, counts, a, b = simulated(args.images, args.classes, args.seeds, torch.Generator().manual_seed(0))
    start = time.perf_counter()
    results = compare_correct(a, b, labels, counts, resamples=args.resamples, seed=0)
    elapsed = time.perf_counter() - start
    top1 = results["top1"]
    print(
        f"compare: {args.images} images x {args.classes} classes x {args.seeds} seeds a side, "
        f"{args.resamples} resamples: {elapsed:.2f} s on {torch.get_num_threads()} torch thread(s) "
        f"(top-1 diff {top1.diff:+.4f}, CI {top1.ci[0]:+.4f} to {top1.ci[1]:+.4f})"  # type: ignore[index]
    )


if __name__ == "__main__":
    main()
