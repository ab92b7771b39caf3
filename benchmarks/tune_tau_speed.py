"""Time the tau search: 21 taus per post-hoc method on 50,000 x 1,000 cached logits (D = 64 features).

Run: .venv/bin/python benchmarks/tune_tau_speed.py [--n 50000] [--classes 1000] [--dim 64] [--threads 2]
Each method is timed --repeats times; the fastest run is the least disturbed by other processes.
"""

from __future__ import annotations

import argparse
import time

import torch

from bagmar_cli.engine.evaluate.tau_search import parse_grid, search_tau
from bagmar_cli.functional.posthoc import POSTHOC_METHODS


def make_inputs(n: int, classes: int, dim: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random float32 features and a classifier, with ImageNet-LT-like counts (1280 down to 5)."""
    gen = torch.Generator().manual_seed(seed)
    counts = (1280 * (5 / 1280) ** (torch.arange(classes) / (classes - 1))).round().long()
    features = torch.randn(n, dim, generator=gen)
    weight = torch.randn(classes, dim, generator=gen) / dim**0.5
    bias = torch.randn(classes, generator=gen) * 0.1
    logits = features @ weight.T + bias
    labels = torch.randint(classes, (n,), generator=gen)
    return dict(logits=logits, labels=labels, counts=counts, features=features, weight=weight, bias=bias)


def main() -> None:
    """Print the seconds each method needs for the whole 0:2:0.1 grid, and per tau."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--classes", type=int, default=1_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    inputs = make_inputs(args.n, args.classes, args.dim)
    taus = parse_grid("0:2:0.1")
    print(
        f"{len(taus)} taus, logits {args.n} x {args.classes} float32, features D={args.dim}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}"
    )
    for method in POSTHOC_METHODS:
        runs = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            result = search_tau(method, taus, **inputs)
            runs.append(time.perf_counter() - start)
        fastest, slowest = min(runs), max(runs)
        print(
            f"{method:>13}: {fastest:6.2f} s for the grid (slowest of {args.repeats}: {slowest:.2f} s), "
            f"{fastest / len(taus) * 1000:6.1f} ms per tau, best tau {result.best['tau']:g}"
        )


if __name__ == "__main__":
    main()
