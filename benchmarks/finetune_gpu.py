"""The CLIP ViT-B/16 fine-tuning recipe's training step on a GPU: full fine-tuning, LoRA and AdaptFormer.

Each variant is bagmar's model as finetune_cost.py builds it (`vit_base_patch16_clip_224`, random weights: the step
costs the same with CLIP's; a cosine head for 1000 classes; LoRA's rank and AdaptFormer's width the settings'
defaults unless `--rank`), timed over SGD steps (momentum 0.9) on one random batch at 224 px under bf16 autocast, the
recipe's batch 128. For each: images/s, minutes an epoch of ImageNet-LT's 115,846 training images would take at
that rate (the GPU side only: no data loading, no validation), and the peak GPU memory from model build to the
last step (`torch.cuda.max_memory_allocated`). `benchmarks/gpu_check.sh` runs it; `--device cpu --backbone
test_vit --batch 2 --steps 1 --warmup 0` is a dry run (no GPU memory to report there).

    python benchmarks/finetune_gpu.py [--device cuda] [--batch 128] [--steps 20] [--warmup 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import torch
from finetune_cost import batch_of, build, input_side, variants  # run as a script: benchmarks/ is on sys.path
from large_scale_gpu import bf16_rate

from bagmar_cli.console import info, result
from bagmar_cli.models.finetune import parameter_counts

EPOCH_IMAGES = 115_846  # ImageNet-LT's training split (Liu et al. 2019)


def device_rate(
    name: str, backbone: str, *, device: torch.device, classes: int, rank: int | None, batch: int, steps: int,
    warmup: int,
) -> dict[str, Any]:  # fmt: skip
    """Images/s of variant `name`'s training step in bf16 on `device`, its parameter counts, and its peak memory."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    model = build(name, backbone, classes, rank).to(device)
    trainable, total = parameter_counts(model)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-3, momentum=0.9)
    images, labels = (t.to(device) for t in batch_of(batch, input_side(backbone), classes))
    model.train()
    rate = bf16_rate(model, optimizer, images, labels, steps=steps, warmup=warmup)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    return {"variant": name, "trainable": trainable, "total": total, "images_per_s": rate,
            "epoch_min": EPOCH_IMAGES / rate / 60, "peak_memory_bytes": peak}  # fmt: skip


def measure(
    backbone: str, device: torch.device, *, classes: int, rank: int | None, batch: int, steps: int, warmup: int
) -> list[dict[str, Any]]:
    """One row per fine-tuning variant (the linear probe left out: the recipe trains adapters or everything)."""
    rows = []
    for name in (name for name in variants() if name != "linear probe"):
        info(f"{name}: {backbone}, {warmup} + {steps} steps of {batch} in bf16 on {device}")
        rows.append(
            device_rate(name, backbone, device=device, classes=classes, rank=rank, batch=batch, steps=steps,
                        warmup=warmup)
        )  # fmt: skip
    return rows


def render(rows: list[dict[str, Any]], device: str, backbone: str, batch: int, size: int) -> list[str]:
    lines = [
        f"| variant ({backbone}, batch {batch}, {size} px, bf16) | trainable | images/s ({device}) "
        f"| min / ImageNet-LT epoch | peak memory GiB |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        peak = "-" if row["peak_memory_bytes"] is None else f"{row['peak_memory_bytes'] / 2**30:.1f}"
        lines.append(
            f"| {row['variant']} | {row['trainable'] / 1e6:.2f} M of {row['total'] / 1e6:.2f} M "
            f"| {row['images_per_s']:.0f} | {row['epoch_min']:.1f} | {peak} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (a dry run)")
    parser.add_argument("--backbone", default="vit_base_patch16_clip_224", help="timm ViT name (random weights)")
    parser.add_argument("--batch", type=int, default=128, help="images per timed step (the recipe's 128)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    parser.add_argument("--classes", type=int, default=1000, help="classes of the head (ImageNet-LT's 1000)")
    parser.add_argument("--rank", type=int, default=None, help="LoRA rank / AdaptFormer width (default: the settings')")
    parser.add_argument("--json", action="store_true", help="print the rows as one JSON line after the table")
    args = parser.parse_args()
    if min(args.batch, args.steps, args.classes, args.rank or 1) < 1 or args.warmup < 0:
        parser.error("--batch, --steps, --classes and --rank must be positive, --warmup >= 0")
    try:
        device = torch.device(args.device)
    except RuntimeError:
        parser.error(f"--device {args.device}: expected cuda, cuda:N or cpu")
    if device.type == "cuda" and not torch.cuda.is_available():
        print(f"Error: --device {args.device}: no CUDA device visible to torch {torch.__version__}", file=sys.stderr)
        sys.exit(1)
    rows = measure(
        args.backbone, device, classes=args.classes, rank=args.rank, batch=args.batch, steps=args.steps,
        warmup=args.warmup,
    )  # fmt: skip
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    for line in render(rows, name, args.backbone, args.batch, input_side(args.backbone)):
        result(line)
    if args.json:
        result(json.dumps({"device": name, "backbone": args.backbone, "batch": args.batch, "rows": rows}))


if __name__ == "__main__":
    main()
