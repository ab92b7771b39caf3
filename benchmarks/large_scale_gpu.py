"""The large-scale backbones' training step on a GPU, measured, beside what large_scale_estimate.py estimates for it.

For each backbone and freezing mode the large-scale presets train (stage 1: everything learns; Places-LT's
fine-tuning: the last stage and the head; stage 2: the head on a frozen backbone; the CLIP ViT-B/16 presets:
AdaptFormer on a frozen base, always at its fixed 224 px), bagmar's model is built as
the trainer builds it (frozen BatchNorms in eval mode), and timed SGD steps on random 224x224 batches are run on
`--device` under bf16 autocast with channels-last tensors (what the estimate assumes: `train.precision = "bf16"`,
`train.channels_last = true`). No data loading: this is the GPU side of an epoch only. Beside each measured rate
it prints the estimate's images/s for an A100 and an H100 (counted FLOPs / NVIDIA-calibrated FLOP/s), so a lent
GPU says how far the estimate is off. `benchmarks/gpu_check.sh` runs it; `--device cpu --size 32` is a dry run.

    python benchmarks/large_scale_gpu.py [--device cuda] [--batch 128] [--steps 20] [--warmup 5] [--size 224]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import torch
from large_scale_estimate import (  # run as a script: its folder, benchmarks/, is on sys.path
    CROP,
    PRESETS,
    Calibration,
    batch_of,
    build,
    markdown_table,
    step_flops,
)
from torch import Tensor, nn

from bagmar_cli.console import info, result
from bagmar_cli.models.classifier import fixed_input_size


def device_rate(
    backbone: str, classes: int, mode: str, *, device: torch.device, batch: int, steps: int, warmup: int, size: int,
    peft: str = "none",
) -> float:  # fmt: skip
    """Images per second of SGD training steps (bf16 autocast, channels-last) of bagmar's model on `device`."""
    torch.manual_seed(0)
    model = build(backbone, classes, mode, peft).to(device, memory_format=torch.channels_last)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-3, momentum=0.9)
    images, labels = batch_of(batch, size, classes)
    images, labels = images.to(device, memory_format=torch.channels_last), labels.to(device)
    return bf16_rate(model, optimizer, images, labels, steps=steps, warmup=warmup)


def bf16_rate(
    model: nn.Module, optimizer: torch.optim.Optimizer, images: Tensor, labels: Tensor, *, steps: int, warmup: int
) -> float:
    """Images per second of `steps` training steps (bf16 autocast forward, cross-entropy, backward, optimiser step) on
    the batch's device, after `warmup` untimed ones; the device is synchronised around the timed steps."""
    device = images.device

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            logits = model(images)
        nn.functional.cross_entropy(logits.float(), labels).backward()  # type: ignore[no-untyped-call]  # torch leaves it unannotated
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(warmup):
        step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return len(images) * steps / (time.perf_counter() - start)


def measure(device: torch.device, *, batch: int, steps: int, warmup: int, size: int) -> list[dict[str, Any]]:
    """One row per (backbone, classes, freezing mode, adapter) of the presets: measured and estimated images/s."""
    calibration = Calibration(step_flops(build("resnet50", 1000, "none"), CROP, 1000))
    rows = []
    for key in sorted({(p.backbone, p.classes, s.freeze, s.peft) for p in PRESETS for s in p.stages}):
        backbone, classes, mode, peft = key
        label = mode if peft == "none" else f"{mode} + {peft}"
        info(f"{backbone} ({classes} classes), freeze {label}: {warmup} + {steps} steps of {batch} on {device}")
        flops = step_flops(build(backbone, classes, mode, peft), CROP, classes)  # at 224 px, as the estimate counts
        side = (fixed_input_size(backbone) or (size, size))[0]  # a ViT's patch grid takes one size only
        rate = device_rate(
            backbone, classes, mode, device=device, batch=batch, steps=steps, warmup=warmup, size=side, peft=peft
        )
        estimated = {gpu: 1 / calibration.seconds(flops, gpu) for gpu in ("A100", "H100")}
        rows.append(
            {"backbone": backbone, "classes": classes, "freeze": label, "size": side, "batch": batch,
             "measured_images_per_s": rate, "estimated_images_per_s": estimated}
        )  # fmt: skip
    return rows


def render(rows: list[dict[str, Any]], device: str) -> list[str]:
    header = ["backbone", "classes", "freeze", "px", "batch", f"measured img/s ({device})", "estimate A100 / H100"]
    body = [
        [r["backbone"], str(r["classes"]), r["freeze"], str(r["size"]), str(r["batch"]),
         f"{r['measured_images_per_s']:.0f}",
         f"{r['estimated_images_per_s']['A100']:.0f} / {r['estimated_images_per_s']['H100']:.0f}"]
        for r in rows
    ]  # fmt: skip
    return markdown_table(header, body, right=3)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (a dry run)")
    parser.add_argument("--batch", type=int, default=128, help="images per timed step")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per model")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    parser.add_argument("--size", type=int, default=CROP, help="image side in pixels (224 as the presets)")
    parser.add_argument("--json", action="store_true", help="print the rows as one JSON line after the table")
    args = parser.parse_args()
    if min(args.batch, args.steps, args.size) < 1 or args.warmup < 0:
        parser.error("--batch, --steps and --size must be positive, --warmup >= 0")
    try:
        device = torch.device(args.device)
    except RuntimeError:
        parser.error(f"--device {args.device}: expected cuda, cuda:N or cpu")
    if device.type == "cuda" and not torch.cuda.is_available():
        print(f"Error: --device {args.device}: no CUDA device visible to torch {torch.__version__}", file=sys.stderr)
        sys.exit(1)
    rows = measure(device, batch=args.batch, steps=args.steps, warmup=args.warmup, size=args.size)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    for line in render(rows, name):
        result(line)
    if args.json:
        result(json.dumps({"device": name, "rows": rows}))


if __name__ == "__main__":
    main()
