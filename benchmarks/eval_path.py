"""Evaluation on an in-memory (tensor) split: the DataLoader path against the tensor slicing it replaced.

Run: .venv/bin/python benchmarks/eval_path.py [--data DIR] [--n 10000] [--backbone resnet32_cifar] [--threads 1]
Without --data, a CIFAR-sized split (N x 3 x 32 x 32 uint8) is generated in a temporary directory. Both paths
run the same randomly initialised model on the same batches; each is timed --repeats times, interleaved, and
the fastest run is reported (the least disturbed by other processes). The logits must be identical.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bagmar_cli.data import load_manifest, load_split
from bagmar_cli.data.augment.tensors import eval_transform
from bagmar_cli.data.manifest import FORMAT_VERSION, Manifest, SourceInfo, write_manifest
from bagmar_cli.data.store.tensors import save_split
from bagmar_cli.engine.evaluate.inference import split_outputs_of
from bagmar_cli.models import build_model
from bagmar_cli.settings import ModelSettings


def generated_split(folder: Path, n: int) -> Path:
    """A tensor dataset of n random CIFAR-sized images over 10 classes, with its test split only."""
    rng = np.random.default_rng(0)
    info = save_split(folder, "test", rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8), np.arange(n) % 10, 10)
    manifest = Manifest(
        format_version=FORMAT_VERSION, dataset="cifar10", classes=[str(c) for c in range(10)],
        image_size=[3, 32, 32], mean=[0.5] * 3, std=[0.25] * 3, splits={"train": info, "test": info}, imb=1.0,
        profile="exp", seed=0, val_per_class=0, source=SourceInfo(name="generated", verified=False),
        default_preset="cifar10_lt", created_by="benchmarks/eval_path.py",
    )  # fmt: skip
    write_manifest(folder, manifest)
    return folder


@torch.no_grad()
def sliced(model: torch.nn.Module, root: Path, batch: int) -> torch.Tensor:
    """The replaced path: load the uint8 tensor, slice batches, normalise, run."""
    manifest = load_manifest(root)
    images, _ = load_split(root, "test")
    normalise = eval_transform(manifest.mean, manifest.std)
    return torch.cat([model(normalise(images[i : i + batch])) for i in range(0, len(images), batch)])


def loader(model: torch.nn.Module, root: Path, batch: int) -> torch.Tensor:
    """The current path: open_eval_split -> DataLoader of whole-batch fetches -> compute_outputs."""
    manifest = load_manifest(root)
    return split_outputs_of(
        model, root, "test", preprocess=None, mean=manifest.mean, std=manifest.std, batch_size=batch
    ).logits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="a prepared tensor dataset (its test split)")
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--backbone", default="resnet32_cifar")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.data or generated_split(Path(tmp), args.n)
        manifest = load_manifest(root)
        model = build_model(ModelSettings(backbone=args.backbone), manifest.num_classes, manifest.image_size[0]).eval()
        times: dict[str, list[float]] = {"sliced": [], "loader": []}
        outputs = {}
        for _ in range(args.repeats):
            for name, run in (("sliced", sliced), ("loader", loader)):
                start = time.perf_counter()
                outputs[name] = run(model, root, args.batch)
                times[name].append(time.perf_counter() - start)
        report = {
            "data": str(args.data) if args.data else f"generated {args.n} x 3 x 32 x 32",
            "n": len(outputs["loader"]),
            "backbone": args.backbone,
            "threads": args.threads,
            "seconds": {name: round(min(values), 4) for name, values in times.items()},
            "identical_logits": bool(torch.equal(outputs["sliced"], outputs["loader"])),
        }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
