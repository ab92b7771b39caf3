"""Cost of fine-tuning one ViT four ways on the CPU: LoRA and AdaptFormer against full fine-tuning and a linear probe.

Each variant is bagmar's model as `build_model` and `freeze.train_only` make it (same backbone, random weights,
a cosine head for `--classes` classes, seed 0):

- `full`: everything trains (`model.peft = "none"`);
- `linear probe`: only the head trains (`model.freeze = "backbone"`);
- `lora`: peft's LoRA (`model.peft = "lora"`) on the linears the settings' default targets, and on all four
  (qkv, proj, fc1, fc2) when ModelSettings has `lora_targets`; otherwise on what models/adapters/lora.py adapts;
- `adaptformer`: AdaptFormer beside each block's MLP (`model.peft = "adaptformer"`).

Step time: forward + backward + SGD step (momentum 0.9) with cross-entropy on one random batch, `--warmup` untimed
steps per variant, then `--steps` timed steps with the variants taking turns (the starting variant rotates), so
that load from other processes hits them alike; the median per variant, and the median over rounds of its time
over full fine-tuning's in the same round (which load that comes and goes moves less). Peak memory: each variant
again in a fresh process (this script with `--memory-of`), its peak resident set (Linux VmHWM, reset through
/proc/self/clear_refs once the model, batch and optimizer exist) over two steps, minus the resident set before
them: what training adds to holding the model. Also: trainable and total parameters, the adapters' share with the
head excluded and included, and the size of the safetensors file of the trained tensors (`adapter_state_dict`:
adapters + head) against the full model's, both written to a temporary folder. Then issue #23's aims.
Markdown on stdout, progress on stderr, `--json FILE` for the numbers.

    python benchmarks/finetune_cost.py [--backbone vit_base_patch16_clip_224] [--batch 4] [--steps 5]
        [--warmup 2] [--threads 1] [--classes 1000] [--rank N] [--no-memory] [--json FILE]

On the 2-core build machine a ViT-B/16 step of 4 images takes 9-13 s on one quiet thread: `--steps 3 --warmup 1`
took 6 minutes there, the defaults about 15 under load average 4 to 9 (`--no-memory` saves a third).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from bagmar_cli.console import info, result
from bagmar_cli.models import build_model
from bagmar_cli.models.adapters import is_adapter
from bagmar_cli.models.classifier import fixed_input_size
from bagmar_cli.models.finetune import adapter_state_dict, parameter_counts
from bagmar_cli.models.freeze import train_only
from bagmar_cli.settings import ModelSettings

ROOT = Path(__file__).resolve().parents[1]
ALL_FOUR = ("qkv", "proj", "fc1", "fc2")
MEMORY_STEPS = 2  # the first step allocates gradients and momentum, the second is the steady state
AIMS = {"trainable_pct": 1.0, "step_vs_full": 1.0, "file_smaller": 50.0}  # issue #23


def variants() -> dict[str, dict[str, Any]]:
    """Variant name -> the ModelSettings fields it sets (besides backbone, head and rank)."""
    found: dict[str, dict[str, Any]] = {"full": {}, "linear probe": {"freeze": "backbone"}, "lora": {"peft": "lora"}}
    if "lora_targets" in ModelSettings.model_fields:
        default = ModelSettings.model_fields["lora_targets"].default
        found["lora"] = {"peft": "lora", "lora_targets": default}
        if list(default) != list(ALL_FOUR):
            found["lora (qkv, proj, fc1, fc2)"] = {"peft": "lora", "lora_targets": list(ALL_FOUR)}
    found["adaptformer"] = {"peft": "adaptformer"}
    return found


def lora_targets_note() -> str:
    """Which linears LoRA adapts here, and where that comes from."""
    if "lora_targets" in ModelSettings.model_fields:
        return f"LoRA targets: `model.lora_targets` default {ModelSettings().model_dump()['lora_targets']!r}"
    return (
        "LoRA targets: qkv, proj, fc1 and fc2, as models/adapters/lora.py adapts them (ModelSettings has no "
        "`lora_targets` setting yet)"
    )


def settings_of(name: str, backbone: str, rank: int | None) -> ModelSettings:
    return ModelSettings(backbone=backbone, head="normed", peft_rank=rank, **variants()[name])


def build(name: str, backbone: str, classes: int, rank: int | None) -> nn.Module:
    """Variant `name` of bagmar's model, trainable parameters set as training sets them (seed 0)."""
    torch.manual_seed(0)
    settings = settings_of(name, backbone, rank)
    model = build_model(settings, classes, 3)
    train_only(model, settings)
    return model


def batch_of(batch: int, size: int, classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return torch.randn(batch, 3, size, size, generator=generator), torch.randint(classes, (batch,), generator=generator)


def input_side(backbone: str) -> int:
    """The side the backbone takes (224 unless it fixes another: timm's test_vit takes 160)."""
    fixed = fixed_input_size(backbone)
    return fixed[0] if fixed else 224


def stepper(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> Callable[[], None]:
    """One training step of `model` on the batch: forward, cross-entropy, backward, SGD (momentum 0.9)."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(trainable, lr=1e-3, momentum=0.9)
    model.train()

    def step() -> None:
        nn.functional.cross_entropy(model(images), labels).backward()  # type: ignore[no-untyped-call]  # torch leaves it unannotated
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def interleaved_times(steps: dict[str, Callable[[], None]], timed: int, warmup: int) -> dict[str, list[float]]:
    """Seconds of each of `timed` steps per variant, the variants taking turns from a rotating start."""
    names = list(steps)
    for _ in range(warmup):
        for name in names:
            steps[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(timed):
        info(f"timed round {round_ + 1}/{timed}")
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            start = time.perf_counter()
            steps[name]()
            times[name].append(time.perf_counter() - start)
    return times


def counts(model: nn.Module) -> dict[str, int | None]:
    """Trainable, total, adapter and head parameters."""
    trainable, total = parameter_counts(model)
    adapters = sum(p.numel() for name, p in model.named_parameters() if is_adapter(name))
    head = sum(p.numel() for p in model.get_submodule("head").parameters())
    return {"trainable": trainable, "total": total, "adapters": adapters, "head": head, "width": width(model)}


def width(model: nn.Module) -> int | None:
    """LoRA's rank or AdaptFormer's bottleneck as built (None without adapters)."""
    for name, param in model.named_parameters():
        if "lora_A" in name or "adaptformer.down_proj.weight" in name:
            return int(param.shape[0])
    return None


def file_bytes(state: dict[str, torch.Tensor], folder: Path, name: str) -> int:
    """Size of `state` written as a safetensors file."""
    path = folder / f"{name.replace(' ', '_')}.safetensors"
    save_file({key: tensor.contiguous() for key, tensor in state.items()}, path)
    return path.stat().st_size


def peak_rss_growth(name: str, backbone: str, classes: int, rank: int | None, batch: int, threads: int) -> float:
    """MiB that `MEMORY_STEPS` training steps of variant `name` add to the resident set, in a fresh process."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": path}
    args = ["--backbone", backbone, "--classes", str(classes), "--batch", str(batch), "--threads", str(threads)]
    args += ["--rank", str(rank)] if rank is not None else []
    done = subprocess.run(
        [sys.executable, __file__, "--memory-of", name, *args], capture_output=True, text=True, env=env, check=True
    )
    return float(json.loads(done.stdout.splitlines()[-1])["peak_rss_growth_mib"])


def _memory_worker(name: str, backbone: str, classes: int, rank: int | None, batch: int) -> float:
    """In the fresh process: VmHWM after the steps minus VmRSS before them, in MiB."""
    step = stepper(build(name, backbone, classes, rank), *batch_of(batch, input_side(backbone), classes))
    before = _status_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # resets the peak resident set (VmHWM) to the current one
    for _ in range(MEMORY_STEPS):
        step()
    return (_status_kib("VmHWM") - before) / 1024


def _status_kib(field: str) -> int:
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith(field + ":"))
    return int(line.split()[1])


def run(
    backbone: str, *, batch: int, steps: int, warmup: int, threads: int, classes: int, rank: int | None, memory: bool
) -> dict[str, Any]:
    """Measure every variant; the report `render` prints and `--json` writes."""
    torch.set_num_threads(threads)
    size = input_side(backbone)
    images, labels = batch_of(batch, size, classes)
    models = {}
    for name in variants():
        info(f"build {name}: {backbone}, {classes} classes")
        models[name] = build(name, backbone, classes, rank)
    load_before = os.getloadavg()
    times = interleaved_times({n: stepper(m, images, labels) for n, m in models.items()}, steps, warmup)
    load_after = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        full_file = file_bytes(models["full"].state_dict(), Path(folder), "full model")
        for name, model in models.items():
            peak = None
            if memory:
                info(f"peak memory of {name} in a fresh process")
                peak = peak_rss_growth(name, backbone, classes, rank, batch, threads)
            trained_file = file_bytes(adapter_state_dict(model), Path(folder), name)
            median = statistics.median(times[name])
            ratio = statistics.median(own / full for own, full in zip(times[name], times["full"], strict=True))
            rows.append(
                {"variant": name, **counts(model), "step_s": times[name], "median_step_s": median,
                 "step_vs_full": ratio, "peak_rss_growth_mib": peak, "trained_file_bytes": trained_file}
            )  # fmt: skip
    return {
        "backbone": backbone, "pretrained": False, "size": size, "batch": batch, "classes": classes,
        "rank": rank, "steps": steps, "warmup": warmup, "threads": threads,
        "torch": torch.__version__, "cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
        "load_average_before": load_before, "load_average_after": load_after, "lora_targets": lora_targets_note(),
        "full_file_bytes": full_file, "memory": "peak RSS growth (VmHWM) over two steps, a fresh process each"
        if memory else None, "rows": rows,
    }  # fmt: skip


def aims(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue #23's aims for each adapter variant: the measured value and whether it holds."""
    checks = []
    for row in (row for row in report["rows"] if row["adapters"]):
        measured = [
            ("adapters, head excluded: % trainable", 100 * row["adapters"] / row["total"], "<", AIMS["trainable_pct"]),
            ("adapters + head: % trainable", 100 * row["trainable"] / row["total"], "<", AIMS["trainable_pct"]),
            ("step time / full fine-tuning's", row["step_vs_full"], "<=", AIMS["step_vs_full"]),
            ("full model's file / trained tensors' file", report["full_file_bytes"] / row["trained_file_bytes"], ">=",
             AIMS["file_smaller"]),
        ]  # fmt: skip
        for aim, value, way, bar in measured:
            holds = {"<": value < bar, "<=": value <= bar, ">=": value >= bar}[way]
            checks.append(
                {"variant": row["variant"], "aim": aim, "value": value, "bar": f"{way} {bar:g}", "holds": holds}
            )
    return checks


def render(report: dict[str, Any]) -> list[str]:
    """The report as markdown lines."""
    r = report
    lines = [
        f"## Fine-tuning cost: {r['backbone']} (random weights), {r['size']} px, batch {r['batch']}, {r['classes']} "
        f"classes, CPU, {r['threads']} torch thread(s)",
        "",
        f"torch {r['torch']}, {r['cpus']} CPUs ({r['cpu']}), load average {_load(r['load_average_before'])} before the "
        f"timed steps, {_load(r['load_average_after'])} after. Step: forward + backward + SGD (momentum 0.9), "
        f"cross-entropy, cosine head; {r['warmup']} warm-up + {r['steps']} timed steps per variant, variants taking "
        f"turns, median (min-max); × full: the median over rounds of the step's time over full fine-tuning's in the "
        f"same round. LoRA rank / AdaptFormer width: {r['rank'] or 'the settings default'}. {r['lora_targets']}.",
        f"Peak memory: {r['memory'] or 'not measured'}.",
        "",
        "| variant | rank / width | trainable | total | adapters % | trainable % | step s | × full "
        "| peak RSS growth MiB | trained-tensors file | full file ÷ it |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in r["rows"]:
        peak = "-" if row["peak_rss_growth_mib"] is None else f"{row['peak_rss_growth_mib']:.0f}"
        lines.append(
            f"| {row['variant']} | {row['width'] or '-'} | {_millions(row['trainable'])} | {_millions(row['total'])} | "
            f"{100 * row['adapters'] / row['total']:.2f} | {100 * row['trainable'] / row['total']:.2f} | "
            f"{row['median_step_s']:.3f} ({min(row['step_s']):.3f}-{max(row['step_s']):.3f}) | "
            f"{row['step_vs_full']:.2f} | {peak} | {_size(row['trained_file_bytes'])} | "
            f"{r['full_file_bytes'] / row['trained_file_bytes']:.0f}× |"
        )
    lines += ["", f"Full model's file: {_size(r['full_file_bytes'])}. Aims (issue #23):", ""]
    lines += ["| variant | aim | measured | bar | holds |", "|---|---|---:|---|---|"]
    for check in aims(r):
        lines.append(
            f"| {check['variant']} | {check['aim']} | {check['value']:.2f} | {check['bar']} | "
            f"{'yes' if check['holds'] else 'no'} |"
        )
    return lines


def _millions(n: int) -> str:
    return f"{n / 1e6:.2f} M" if n >= 10_000 else str(n)


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 2**10:.0f} KiB"


def _load(values: tuple[float, ...]) -> str:
    return " / ".join(f"{v:.2f}" for v in values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backbone", default="vit_base_patch16_clip_224", help="timm ViT name (random weights)")
    parser.add_argument("--batch", type=int, default=4, help="images per step")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per variant (the median is reported)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per variant first")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (also in the memory processes)")
    parser.add_argument("--classes", type=int, default=1000, help="classes of the head")
    parser.add_argument("--rank", type=int, default=None, help="LoRA rank / AdaptFormer width (default: the settings')")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory processes")
    parser.add_argument("--json", type=Path, default=None, help="also write the report as JSON to this file")
    parser.add_argument("--memory-of", default=None, help=argparse.SUPPRESS)  # the fresh process of one variant
    args = parser.parse_args()
    if min(args.batch, args.steps, args.threads, args.classes, args.rank or 1) < 1 or args.warmup < 0:
        parser.error("--batch, --steps, --threads, --classes and --rank must be positive, --warmup >= 0")
    if args.memory_of is not None:
        torch.set_num_threads(args.threads)
        growth = _memory_worker(args.memory_of, args.backbone, args.classes, args.rank, args.batch)
        result(json.dumps({"variant": args.memory_of, "peak_rss_growth_mib": growth}))
        return
    report = run(
        args.backbone, batch=args.batch, steps=args.steps, warmup=args.warmup, threads=args.threads,
        classes=args.classes, rank=args.rank, memory=not args.no_memory,
    )  # fmt: skip
    for line in render(report):
        result(line)
    if args.json is not None:
        args.json.write_text(json.dumps({**report, "aims": aims(report)}, indent=1) + "\n")


if __name__ == "__main__":
    main()
