"""Fashion-MNIST-LT stage 2: BaGMar classifier re-training on a frozen cross-entropy backbone, beside one stage.

For each seed at one imbalance (100 by default) it trains, with benchmarks/fmnist_lt.py's functions and run names:
one-stage cross-entropy (the `fashion_mnist_lt` recipe with loss.name=ce, which is also stage 1 of the decoupled
protocol) and one-stage BaGMar (the recipe as it is); then stage 2, the `fashion_mnist_lt_stage2` preset started
from that seed's stage-1 best.safetensors through `model.weights` (frozen backbone, BatchNorms in eval mode,
class-aware sampling, a fresh head trained with BaGMar), and the same stage 2 with cross-entropy (Kang et al.'s
cRT), the control that tells the loss's share from the re-training's. Each run is scored as fmnist_lt.py scores it
(test top-1, many/medium/few, macro, tail, plain and with PN at the τ tuned on val), and each stage-2 record says
whether every backbone tensor of its checkpoint (BatchNorm statistics included) is bit-identical to its stage 1's.

Runs are resumable as in fmnist_lt.py (runs/<run>.json under --out; an --out shared with fmnist_lt.py reuses its
CE and BaGMar runs). Progress goes to stderr, the markdown table to stdout; --out receives results.json and
results.md. Budget: 12 runs, 4 minutes on the 2 shared cores at a load average of 2 to 5 (one-stage runs 20 to
75 s each, stage-2 runs 10 to 30 s); at most about 10 minutes on 2 busy ones.

    .venv/bin/python benchmarks/fmnist_stage2.py [--out DIR] [--seeds 0,1,2] [--imb 100] [--epochs N]
        [--stage2-epochs N] [--jobs 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from fmnist_lt import (  # run as a script: its folder, benchmarks/, is on sys.path
    METRICS,
    PRESET,
    TAIL,
    VAL_PER_CLASS,
    VARIANTS,
    RunSpec,
    _cell,
    _interrupt,
    _ints,
    _mean_std,
    grid_meta,
    prepared,
    run_grid,
    run_main,
    save_results,
    train_and_score,
)

from bagmar_cli.checkpoint import atomic_write, load_checkpoint
from bagmar_cli.console import info, result
from bagmar_cli.data import load_manifest
from bagmar_cli.models.weights import BACKBONE_PREFIX
from bagmar_cli.settings import load_settings

STAGE2_PRESET = "fashion_mnist_lt_stage2"
STAGE1_LOSS = "ce"  # the decoupled protocol's stage 1: plain cross-entropy (also the one-stage CE baseline)
STAGE2_LOSSES = ("bagmar", "ce")  # the preset's BaGMar, and cross-entropy: Kang et al.'s cRT, the control
# method -> label, in table order; a stage-2 method is "stage2_<loss>"
METHODS = {
    "ce": "CE, one stage",
    "bagmar": "BaGMar, one stage",
    "stage2_bagmar": "CE → stage 2, BaGMar",
    "stage2_ce": "CE → stage 2, CE (cRT)",
}
DELTA_METRICS = ("top1", "many", "medium", "macro", "tail")  # few: no class in the group at imb 100


@dataclass(frozen=True)
class Stage2Spec:
    """Stage 2 with `loss` on the best checkpoint of one stage-1 run."""

    loss: str
    stage1: str  # the stage-1 run's name (fmnist_lt.py's RunSpec.name)
    stage1_checkpoint: str
    imb: int
    seed: int
    epochs: int
    data: Path

    @property
    def name(self) -> str:
        return f"{self.stage1}-stage2-{self.loss}-e{self.epochs}"


def run_stage2(spec: Stage2Spec, runs: Path) -> dict[str, Any]:
    """Train stage 2 (or resume), score it as fmnist_lt.run_one does; the record is saved before it is returned."""
    record_path = runs / f"{spec.name}.json"
    if record_path.exists():
        return json.loads(record_path.read_text())
    start = time.perf_counter()
    settings = load_settings(
        STAGE2_PRESET,
        overrides=[f"loss.name={spec.loss}"],
        flags={
            "model.weights": Path(spec.stage1_checkpoint),
            "data.root": spec.data,
            "data.imb": spec.imb,
            "train.seed": spec.seed,
            "train.epochs": spec.epochs,
        },
    )
    scored = train_and_score(settings, runs / spec.name)
    record = {**asdict(spec), "method": f"stage2_{spec.loss}", "data": str(spec.data), "name": spec.name, **scored}
    record["backbone_unchanged"] = backbone_unchanged(Path(spec.stage1_checkpoint), Path(scored["checkpoint"]))
    record["seconds"] = round(time.perf_counter() - start, 1)
    atomic_write(record_path, json.dumps(record, indent=1).encode())
    return record


def backbone_unchanged(stage1: Path, stage2: Path) -> bool:
    """Whether the two checkpoints hold the same backbone tensors, bit for bit (BatchNorm buffers included)."""
    before, after = (_backbone(path) for path in (stage1, stage2))
    return before.keys() == after.keys() and all(torch.equal(before[key], after[key]) for key in before)


def _backbone(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path).section(BACKBONE_PREFIX.rstrip("."))


# -- summaries ---------------------------------------------------------------------------------


def summarise(records: list[dict[str, Any]], seeds: list[int]) -> dict[str, Any]:
    """Per method: mean and sample std over seeds of each metric, plain and PN, and the taus; and per stage-2
    method and variant, stage 2 minus its own stage 1 (paired by seed) for the metrics of DELTA_METRICS."""
    by = {(r.get("method", r["loss"]), r["seed"]): r for r in records}  # one-stage runs: method = loss
    summary: dict[str, Any] = {}
    for method in METHODS:
        mine = [by[method, seed] for seed in seeds]
        entry = {variant: _mean_std([r[variant] for r in mine]) for variant in VARIANTS}
        summary[method] = entry | {"tau": [r["tau"] for r in mine], "seeds": seeds}
    summary["stage2_minus_stage1"] = {
        f"stage2_{loss}": {
            variant: {
                metric: _stat(
                    [by[f"stage2_{loss}", s][variant][metric] - by[STAGE1_LOSS, s][variant][metric] for s in seeds]
                )
                for metric in DELTA_METRICS
            }
            for variant in VARIANTS
        }
        for loss in STAGE2_LOSSES
    }
    summary["backbone_unchanged"] = [
        by[f"stage2_{loss}", seed]["backbone_unchanged"] for loss in STAGE2_LOSSES for seed in seeds
    ]
    return summary


def _stat(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def markdown(summary: dict[str, Any], root: Path, imb: int, epochs: int, stage2_epochs: int, seeds: list[int]) -> str:
    """The table (rows method x plain/PN, columns mean ± std in % over seeds) and the paired stage-2 gains."""
    splits = load_manifest(root).splits
    train, val, test = splits["train"], splits["val"], splits["test"]
    unchanged = summary["backbone_unchanged"]
    lines = [
        f"### Fashion-MNIST-LT, imbalance {imb}: one stage vs. stage-2 classifier re-training",
        "",
        f"Train {train.n:,} images ({max(train.counts):,} down to {min(train.counts)} per class), val {val.n} "
        f"({VAL_PER_CLASS} per class), test {test.n:,} (balanced). One stage and stage 1: {epochs} epochs; stage 2: "
        f"{stage2_epochs} epochs of class-aware sampling on the frozen stage-1 (CE) backbone, fresh head, BaGMar "
        f"(the preset) or CE loss. Accuracy in %, mean ± std over seeds {', '.join(map(str, seeds))}. PN: τ and c "
        "chosen on val. "
        f"Tail: the {TAIL} classes with the fewest training images. –: no class in the group. Stage-2 backbone "
        f"bit-identical to its stage 1's: {sum(unchanged)} of {len(unchanged)} runs.",
        "",
        "| method | | top-1 | many | medium | few | macro | tail | τ |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for method, label in METHODS.items():
        entry = summary[method]
        for variant in VARIANTS:
            cells = [_cell(entry[variant].get(metric)) for metric in METRICS]
            tau = _cell(_stat(entry["tau"]), 1, 1) if variant == "pn" else ""
            lines.append(
                f"| {label if variant == 'plain' else ''} | {'plain' if variant == 'plain' else 'PN'} | "
                f"{' | '.join(cells)} | {tau} |"
            )
    lines += [
        "",
        "Stage 2 minus its own stage 1 (same seed), in points, mean ± std over seeds:",
        "",
        f"| stage 2 | | {' | '.join(DELTA_METRICS).replace('top1', 'top-1')} |",
        f"|---|---|{'---|' * len(DELTA_METRICS)}",
    ]
    for method, by_variant in summary["stage2_minus_stage1"].items():
        for variant in VARIANTS:
            cells = [_signed(by_variant[variant][metric]) for metric in DELTA_METRICS]
            label = METHODS[method].removeprefix("CE → stage 2, ") if variant == "plain" else ""
            variant_label = "plain" if variant == "plain" else "PN (each on its own τ)"
            lines.append(f"| {label} | {variant_label} | {' | '.join(cells)} |")
    lines.append("")
    return "\n".join(lines)


def _signed(stat: dict[str, float]) -> str:
    return f"{stat['mean'] * 100:+.1f} ± {stat['std'] * 100:.1f}"


# -- main --------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/fmnist_stage2"), help="output directory")
    parser.add_argument("--seeds", type=_ints, default=[0, 1, 2], help="training seeds, comma-separated")
    parser.add_argument("--imb", type=int, default=100, help="imbalance factor")
    parser.add_argument("--epochs", type=int, default=None, help="one-stage and stage-1 epochs (default: preset's)")
    parser.add_argument("--stage2-epochs", type=int, default=None, help="stage-2 epochs (default: its preset's)")
    parser.add_argument("--jobs", type=int, default=2, help="runs in parallel, one process each")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    signal.signal(signal.SIGTERM, _interrupt)
    epochs = args.epochs or load_settings(PRESET).train.epochs
    stage2_epochs = args.stage2_epochs or load_settings(STAGE2_PRESET).train.epochs
    started = time.perf_counter()
    runs = args.out / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    data = prepared(args.imb, args.out)
    one_stage = [RunSpec(loss, args.imb, seed, epochs, data) for seed in args.seeds for loss in (STAGE1_LOSS, "bagmar")]
    info(
        f"{len(one_stage)} one-stage runs then {len(args.seeds) * len(STAGE2_LOSSES)} stage-2 runs "
        f"(imb {args.imb}, seeds {args.seeds}), "
        f"{epochs} + {stage2_epochs} epochs, {args.jobs} processes x {args.threads} threads; output in {args.out}"
    )
    records = run_grid(one_stage, runs, args.jobs, args.threads)
    stage1 = {r["seed"]: r for r in records if r["loss"] == STAGE1_LOSS}
    stage2 = [
        Stage2Spec(loss, stage1[seed]["name"], stage1[seed]["checkpoint"], args.imb, seed, stage2_epochs, data)
        for seed in args.seeds
        for loss in STAGE2_LOSSES
    ]
    records += run_grid(stage2, runs, args.jobs, args.threads, run=run_stage2)
    records.sort(key=lambda r: r["name"])
    summary = summarise(records, args.seeds)
    table = markdown(summary, data, args.imb, epochs, stage2_epochs, args.seeds)
    meta = {
        "presets": {"one_stage": PRESET, "stage2": STAGE2_PRESET},
        "epochs": epochs,
        "stage2_epochs": stage2_epochs,
        "seeds": args.seeds,
        "imb": args.imb,
        "val_per_class": VAL_PER_CLASS,
        **grid_meta(records, args.jobs, args.threads, started),
    }
    save_results(args.out, meta, summary, records, table)
    info(f"wrote {args.out / 'results.json'} and results.md in {meta['wall_seconds'] / 60:.1f} min")
    result(table)


if __name__ == "__main__":
    run_main(main)
