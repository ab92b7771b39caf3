"""Fashion-MNIST-LT accuracy benchmark: eight losses x imbalance 100 and 10 x three seeds, plain and with PN.

Every run trains the one recipe of the `fashion_mnist_lt` preset with a loss of LOSSES, picks PN's tau on
the balanced validation split (`tune_tau`, which also records PN's normalisation vector c measured there),
and scores the untouched test split with the raw logits and with PN (what `bagmar eval --tau auto` does).
The datasets are prepared once per imbalance (prepare seed 0, 50 val images per class); the seed varies
the training only. Each finished run leaves `runs/<run>.json` under --out and is skipped on a restart; a run
cut short resumes from its last.safetensors. Run names carry the epoch count, so budgets never mix.
Progress goes to stderr, the markdown tables to stdout; --out receives results.json, results.md and
results.png. Each run also records which test images it got right (plain and PN), so that every loss is compared
with cross-entropy and with BaGMar by seed-level intervals (`bagmar compare`'s hierarchical bootstrap: seeds, then
test images); records written before that are reported without intervals.

Runs go to --jobs worker processes of --threads torch threads each: on a shared 2-core machine two
one-thread processes beat one two-thread process, whose OpenMP waits for a busy core slowed it 5- to
30-fold in our measurements.

    .venv/bin/python benchmarks/fmnist_lt.py [--out DIR] [--seeds 0,1,2] [--imbs 100,10]
        [--losses ce,bagmar,...] [--epochs N] [--jobs 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import signal
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bagmar_cli.checkpoint import atomic_write
from bagmar_cli.console import info, result
from bagmar_cli.data import load_manifest, load_split, prepare_dataset
from bagmar_cli.engine.evaluate.compare import metric_json
from bagmar_cli.engine.evaluate.evaluator import evaluate, split_outputs
from bagmar_cli.engine.evaluate.posthoc import posthoc_scores, resolve_posthoc
from bagmar_cli.engine.evaluate.report import summarise
from bagmar_cli.engine.evaluate.tuning import tune_tau
from bagmar_cli.engine.train.recipe import train
from bagmar_cli.functional.metrics import predict
from bagmar_cli.functional.paired import compare_correct
from bagmar_cli.settings import Settings, load_settings

PRESET = "fashion_mnist_lt"
VAL_PER_CLASS = 50  # balanced validation split for best-epoch selection and PN's tau (500 images)
PREPARE_SEED = 0  # the dataset is fixed; the training seed varies
DRW_FRACTION = 0.8  # LDAM-DRW re-weights from epoch 160 of 200 (Cao et al. 2019); 8 epochs: from epoch 6 (0-based)
TAIL = 3  # the tail metric: mean test accuracy of the three classes with the fewest training images
METRICS = ("top1", "many", "medium", "few", "macro", "tail")
VARIANTS = ("plain", "pn")
REFERENCES = ("ce", "bagmar")  # every loss is compared with these, variant for variant, with seed-level intervals
HEADERS = {"top1": "top-1", "medium": "medium", "few": "few"}
LEVEL, RESAMPLES = 0.95, 2000  # the intervals' confidence level and bootstrap draws (seeded: 0)

# name -> (label, overrides on the preset). {drw} is the first DRW epoch (0-based) for the run's epoch count.
LOSSES: dict[str, tuple[str, list[str]]] = {
    "ce": ("CE", ["loss.name=ce"]),
    "focal": ("focal (γ 1)", ["loss.name=focal", "loss.focal_gamma=1.0"]),
    "cb_ce": ("CB-CE (β 0.9999)", ["loss.name=ce", "loss.reweight=cb", "loss.cb_beta=0.9999"]),
    "ldam_drw": (
        "LDAM-DRW",
        [
            "loss.name=ldam",
            "model.head=normed",
            "model.head_scale=30",
            "loss.reweight=cb",
            "loss.cb_beta=0.9999",
            "loss.reweight_epoch={drw}",
        ],
    ),
    "balanced_softmax": ("balanced softmax", ["loss.name=balanced_softmax"]),
    "logit_adjusted": ("logit-adjusted (τ 1)", ["loss.name=logit_adjusted", "loss.la_tau=1.0"]),
    "bagmar": ("BaGMar (λ 1, 1)", ["loss.name=bagmar", "loss.lambda1=1.0", "loss.lambda2=1.0"]),
    "gala": ("GALA (λ 1.2, 0.9)", ["loss.name=bagmar", "loss.lambda1=1.2", "loss.lambda2=0.9"]),
}


@dataclass(frozen=True)
class RunSpec:
    """One training run of the grid."""

    loss: str
    imb: int
    seed: int
    epochs: int
    data: Path

    @property
    def name(self) -> str:
        return f"imb{self.imb}-e{self.epochs}-{self.loss}-s{self.seed}"

    def overrides(self) -> list[str]:
        return [item.format(drw=int(DRW_FRACTION * self.epochs)) for item in LOSSES[self.loss][1]]


RunFn = Callable[[Any, Path], dict[str, Any]]  # (spec, runs dir) -> the run's record, saved under runs/


# -- one run -----------------------------------------------------------------------------------


def run_one(spec: RunSpec, runs: Path) -> dict[str, Any]:
    """Train (or resume), tune PN's tau on val, evaluate on test; the record is saved before it is returned."""
    record_path = runs / f"{spec.name}.json"
    if record_path.exists():
        return json.loads(record_path.read_text())
    start = time.perf_counter()
    settings = load_settings(
        PRESET,
        overrides=spec.overrides(),
        flags={"data.root": spec.data, "data.imb": spec.imb, "train.seed": spec.seed, "train.epochs": spec.epochs},
    )
    scored = train_and_score(settings, runs / spec.name)
    record = {**asdict(spec), "data": str(spec.data), "name": spec.name, **scored}
    record["seconds"] = round(time.perf_counter() - start, 1)
    atomic_write(record_path, json.dumps(record, indent=1).encode())
    return record


def train_and_score(settings: Settings, run_dir: Path) -> dict[str, Any]:
    """Train `settings` into `run_dir` (resuming from its last.safetensors), tune PN's tau on val, score test."""
    resume = (run_dir / "last.safetensors").exists()
    checkpoint = train(settings, run_dir, resume=resume, overwrite=not resume)
    tuned = tune_tau(checkpoint, method="pn")  # split: val; records tau and c in the checkpoint
    outputs = split_outputs(checkpoint, data=None, split="test")
    counts = outputs.counts
    posthoc = resolve_posthoc(outputs.ckpt, "auto", None)
    pn_preds = predict(posthoc_scores(posthoc, outputs.ckpt, outputs.logits, None))
    return {
        "checkpoint": str(checkpoint),
        "best_epoch": outputs.ckpt.meta.best.epoch if outputs.ckpt.meta.best else None,
        "tau": tuned.search.best["tau"],
        "plain": _scores(evaluate(outputs).to_json(), counts),
        "pn": _scores(evaluate(outputs, posthoc).to_json(), counts),
        "correct": {
            "plain": pack_correct(predict(outputs.logits) == outputs.labels),
            "pn": pack_correct(pn_preds == outputs.labels),
        },
    }


def pack_correct(correct: torch.Tensor) -> str:
    """Which test images a run got right, one bit each (numpy.packbits), as hex: 2,500 characters for 10,000."""
    return np.packbits(correct.numpy().astype(np.uint8)).tobytes().hex()


def unpack_correct(text: str, n: int) -> torch.Tensor:
    """The (n,) booleans `pack_correct` packed."""
    bits = np.unpackbits(np.frombuffer(bytes.fromhex(text), dtype=np.uint8))[:n]
    return torch.from_numpy(bits.astype(bool))


def _scores(report: dict[str, Any], counts: list[int]) -> dict[str, Any]:
    """The report's accuracies, and the tail metric (its per-class accuracies of the rarest classes)."""
    rarest = sorted(range(len(counts)), key=counts.__getitem__)[:TAIL]
    keep = ("top1", "top5", "many", "medium", "few", "macro", "nll", "ece", "per_class")
    return {key: report[key] for key in keep} | {"tail": statistics.fmean(report["per_class"][i] for i in rarest)}


def _start_worker(threads: int) -> None:
    torch.set_num_threads(threads)


# -- the grid ----------------------------------------------------------------------------------


def prepared(imb: int, out: Path) -> Path:
    """The dataset directory for `imb`, prepared on first use."""
    root = out / "data" / f"fashion_mnist-lt-imb{imb}-val{VAL_PER_CLASS}"
    if not (root / "manifest.json").exists():
        prepare_dataset("fashion_mnist", imb=imb, val_per_class=VAL_PER_CLASS, seed=PREPARE_SEED, out=root)
    return root


def run_grid(specs: Sequence[Any], runs: Path, jobs: int, threads: int, run: RunFn = run_one) -> list[dict[str, Any]]:
    """`run(spec, runs)` for every spec (run_one: a RunSpec), finished ones read back; in `jobs` processes when
    jobs > 1 (`run` must then be a module-level function, which a spawned worker imports by name)."""
    records, started = [], time.perf_counter()

    def done(record: dict[str, Any]) -> None:
        records.append(record)
        elapsed = time.perf_counter() - started
        info(
            f"[{len(records)}/{len(specs)}] {record['name']}: test top-1 {record['plain']['top1']:.2%}, "
            f"PN (τ {record['tau']:g}) {record['pn']['top1']:.2%}, {record['seconds']:.0f} s "
            f"({elapsed / 60:.1f} min elapsed)"
        )

    if jobs == 1:
        _start_worker(threads)
        for spec in specs:
            done(run(spec, runs))
        return records
    context = multiprocessing.get_context("spawn")  # no fork of a process that has started OpenMP threads
    with context.Pool(jobs, initializer=_start_worker, initargs=(threads,)) as pool:  # exit: SIGTERM to workers
        for record in pool.imap_unordered(_run_packed, [(run, spec, runs) for spec in specs]):
            done(record)
    return records


def _run_packed(args: tuple[RunFn, Any, Path]) -> dict[str, Any]:
    run, spec, runs = args
    return run(spec, runs)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # so that `kill` stops the workers too (each keeps its last checkpoint)


# -- summaries ---------------------------------------------------------------------------------


def summarise_grid(records: list[dict[str, Any]], imbs: list[int], losses: list[str]) -> dict[str, Any]:
    """Per imbalance and loss: mean and sample std over seeds of each metric, plain and with PN, and the taus."""
    summary: dict[str, Any] = {}
    for imb in imbs:
        for loss in losses:
            mine = sorted((r for r in records if r["imb"] == imb and r["loss"] == loss), key=lambda r: r["seed"])
            entry = {variant: _mean_std([r[variant] for r in mine]) for variant in VARIANTS}
            summary.setdefault(f"imb{imb}", {})[loss] = entry | {
                "tau": [r["tau"] for r in mine],
                "seeds": [r["seed"] for r in mine],
            }
    return summary


def seed_intervals(records: list[dict[str, Any]], datasets: dict[int, Path], losses: list[str]) -> dict[str, Any]:
    """Per imbalance, variant and reference loss (REFERENCES): each other loss's difference from it, with a
    hierarchical-bootstrap interval over seeds then test images (`functional.paired.compare_correct`).

    A loss or reference whose records hold no per-image results (written before they were recorded) is left out.
    """
    intervals: dict[str, Any] = {}
    for imb, root in datasets.items():
        labels = load_split(root, "test")[1]
        counts = torch.tensor(load_manifest(root).splits["train"].counts)
        sides = {loss: _seeds(records, imb, loss, labels.numel()) for loss in losses}
        for variant in VARIANTS:
            for ref in (ref for ref in REFERENCES if sides.get(ref)):
                for loss in (loss for loss in losses if loss != ref and sides[loss]):
                    a = torch.stack([seed[variant] for seed in sides[loss]])
                    b = torch.stack([seed[variant] for seed in sides[ref]])
                    results = compare_correct(a, b, labels, counts, resamples=RESAMPLES, seed=0, level=LEVEL)
                    entry = intervals.setdefault(f"imb{imb}", {}).setdefault(variant, {}).setdefault(f"vs_{ref}", {})
                    entry[loss] = {name: metric_json(value) for name, value in results.items()}
    return intervals


def _seeds(records: list[dict[str, Any]], imb: int, loss: str, n: int) -> list[dict[str, torch.Tensor]]:
    """Each seed's per-image correctness (plain, pn) for `loss` at `imb`; empty when a record lacks it."""
    mine = sorted((r for r in records if r["imb"] == imb and r["loss"] == loss), key=lambda r: r["seed"])
    if not mine or any("correct" not in r for r in mine):
        return []
    return [{variant: unpack_correct(r["correct"][variant], n) for variant in VARIANTS} for r in mine]


def intervals_markdown(intervals: dict[str, Any], imb: int, losses: list[str]) -> list[str]:
    """Lines of a table: each loss minus CE and minus BaGMar (top-1 and few-shot), in points, with the interval;
    * marks a difference the interval tells from 0."""
    mine = intervals.get(f"imb{imb}")
    if not mine:
        return ["No seed-level intervals: these runs were recorded without per-image results; rerun them.", ""]
    refs = [ref for ref in REFERENCES if f"vs_{ref}" in mine.get("plain", {})]
    metrics = [metric for metric in ("top1", "medium", "few") if _has(mine, metric)]  # groups with classes only
    header = [f"{HEADERS[metric]} − {LOSSES[ref][0].split(' ')[0]}" for ref in refs for metric in metrics]
    lines = [
        f"Differences in points, mean over seeds, with {100 * LEVEL:g} % hierarchical-bootstrap intervals (seeds, "
        f"then test images; {RESAMPLES} resamples). * : the interval excludes 0; otherwise the data cannot tell.",
        "",
        "| loss | | " + " | ".join(header) + " |",
        "|---|---|" + "---|" * len(header),
    ]
    for loss in losses:
        for variant in VARIANTS:
            against = mine.get(variant, {})
            cells = [_diff_cell(against.get(f"vs_{ref}", {}).get(loss, {}).get(m)) for ref in refs for m in metrics]
            label = LOSSES[loss][0] if variant == "plain" else ""
            lines.append(f"| {label} | {variant if variant == 'plain' else 'PN'} | {' | '.join(cells)} |")
    return [*lines, ""]


def _has(intervals: dict[str, Any], metric: str) -> bool:
    """Whether any comparison at this imbalance has a value for `metric` (a shot group may hold no class)."""
    return any(
        entry[metric]["diff"] is not None
        for refs in intervals.values()
        for losses in refs.values()
        for entry in losses.values()
    )


def _diff_cell(entry: dict[str, Any] | None) -> str:
    """'+1.2 [+0.3, +2.1] *' (points), or – where there is nothing to compare."""
    if not entry or entry["diff"] is None:
        return "–"
    low, high = entry["ci"]
    mark = " *" if entry["distinguishable"] else ""
    return f"{100 * entry['diff']:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}]{mark}"


def _mean_std(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """The evaluator's summary (mean, sample std) plus the tail metric, which it does not know."""
    stats = summarise(reports)
    tails = [r["tail"] for r in reports]
    stats["tail"] = {"mean": statistics.fmean(tails), "std": statistics.stdev(tails) if len(tails) > 1 else 0.0}
    return stats


def markdown(
    summary: dict[str, Any],
    datasets: dict[int, Path],
    epochs: int,
    seeds: list[int],
    intervals: dict[str, Any] | None = None,
) -> str:
    """One table per imbalance: rows loss x plain/PN, columns mean ± std (in %) over seeds; then, with
    `intervals`, each loss against cross-entropy and BaGMar with seed-level intervals."""
    lines = []
    for imb, root in datasets.items():
        splits = load_manifest(root).splits
        train, val, test = splits["train"], splits["val"], splits["test"]
        lines += [
            f"### Fashion-MNIST-LT, imbalance {imb}",
            "",
            f"Train {train.n:,} images ({max(train.counts):,} down to {min(train.counts)} per class), val "
            f"{val.n} ({VAL_PER_CLASS} per class), test {test.n:,} (balanced). {epochs} epochs; accuracy in %, "
            f"mean ± std over seeds {', '.join(map(str, seeds))}. PN: τ and c chosen on val. Tail: the {TAIL} "
            "classes with the fewest training images. –: no class in the group.",
            "",
            "| loss | | top-1 | many | medium | few | macro | tail | τ |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for loss, entry in summary[f"imb{imb}"].items():
            for variant in VARIANTS:
                cells = [_cell(entry[variant].get(metric)) for metric in METRICS]
                tau = _cell(
                    {
                        "mean": statistics.fmean(entry["tau"]),
                        "std": statistics.stdev(entry["tau"]) if len(entry["tau"]) > 1 else 0.0,
                    },
                    1,
                    1,
                )
                label = LOSSES[loss][0] if variant == "plain" else ""
                lines.append(
                    f"| {label} | {variant if variant == 'plain' else 'PN'} | {' | '.join(cells)} | "
                    f"{tau if variant == 'pn' else ''} |"
                )
        lines.append("")
        if intervals is not None:
            lines += intervals_markdown(intervals, imb, list(summary[f"imb{imb}"]))
    return "\n".join(lines)


def _cell(stat: dict[str, float] | None, scale: float = 100.0, digits: int = 1) -> str:
    return "–" if stat is None else f"{stat['mean'] * scale:.{digits}f} ± {stat['std'] * scale:.{digits}f}"


def plot(summary: dict[str, Any], losses: list[str], path: Path) -> None:
    """Top-1 and tail accuracy per loss, plain vs PN, mean ± std over seeds: one row of panels per imbalance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    imbs = list(summary)
    fig, axes = plt.subplots(len(imbs), 2, figsize=(12, 3.6 * len(imbs)), squeeze=False)
    x = range(len(losses))
    for row, imb in zip(axes, imbs, strict=True):
        for ax, metric in zip(row, ("top1", "tail"), strict=True):
            for offset, variant, marker in ((-0.15, "plain", "o"), (0.15, "pn", "s")):
                stats = [summary[imb][loss][variant][metric] for loss in losses]
                ax.errorbar(
                    [i + offset for i in x],
                    [100 * s["mean"] for s in stats],
                    yerr=[100 * s["std"] for s in stats],
                    fmt=marker,
                    capsize=3,
                    label="plain" if variant == "plain" else "PN (τ on val)",
                )
            ax.set_xticks(list(x), [LOSSES[loss][0] for loss in losses], rotation=25, ha="right", fontsize=8)
            ax.set_title(f"Fashion-MNIST-LT {imb}: {'test top-1' if metric == 'top1' else f'tail-{TAIL} classes'}")
            ax.set_ylabel("accuracy (%)")
            ax.grid(axis="y", alpha=0.3)
            ax.legend(fontsize=8)
    fig.suptitle(
        "Test accuracy, mean ± std over seeds; PN with τ and c from the val split; y axes do not start at 0", fontsize=9
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- main --------------------------------------------------------------------------------------


def grid_meta(records: list[dict[str, Any]], jobs: int, threads: int, started: float) -> dict[str, Any]:
    """The part of results.json's meta every grid records: processes, threads, times and the machine."""
    return {
        "jobs": jobs,
        "threads": threads,
        "wall_seconds": round(time.perf_counter() - started, 1),
        "run_seconds": round(sum(r["seconds"] for r in records), 1),
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
    }


def save_results(
    out: Path,
    meta: dict[str, Any],
    summary: dict[str, Any],
    records: list[dict[str, Any]],
    table: str,
    intervals: dict[str, Any] | None = None,
) -> None:
    """results.json (meta, summary, seed-level intervals when given, every run) and results.md under `out`."""
    everything = {"meta": meta, "summary": summary} | ({"intervals": intervals} if intervals is not None else {})
    everything["runs"] = records
    atomic_write(out / "results.json", json.dumps(everything, indent=1).encode())
    atomic_write(out / "results.md", table.encode())


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part]


def _losses(text: str) -> list[str]:
    names = [part for part in text.split(",") if part]
    unknown = [name for name in names if name not in LOSSES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown loss {', '.join(unknown)}; choose from {', '.join(LOSSES)}")
    return names


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/fmnist_lt"), help="output directory")
    parser.add_argument("--seeds", type=_ints, default=[0, 1, 2], help="training seeds, comma-separated")
    parser.add_argument("--imbs", type=_ints, default=[100, 10], help="imbalance factors, comma-separated")
    parser.add_argument("--losses", type=_losses, default=list(LOSSES), help=f"of: {', '.join(LOSSES)}")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per run (default: the preset's)")
    parser.add_argument("--jobs", type=int, default=2, help="runs in parallel, one process each")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    signal.signal(signal.SIGTERM, _interrupt)
    epochs = args.epochs or load_settings(PRESET).train.epochs
    started = time.perf_counter()
    runs = args.out / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    datasets = {imb: prepared(imb, args.out) for imb in args.imbs}
    specs = [
        RunSpec(loss, imb, seed, epochs, datasets[imb])
        for seed in args.seeds
        for imb in args.imbs
        for loss in args.losses
    ]
    info(
        f"{len(specs)} runs ({len(args.losses)} losses x imb {args.imbs} x seeds {args.seeds}), {epochs} epochs, "
        f"{args.jobs} processes x {args.threads} threads; output in {args.out}"
    )
    records = sorted(run_grid(specs, runs, args.jobs, args.threads), key=lambda r: r["name"])
    summary = summarise_grid(records, args.imbs, args.losses)
    intervals = seed_intervals(records, datasets, args.losses)
    table = markdown(summary, datasets, epochs, args.seeds, intervals)
    meta = {
        "preset": PRESET,
        "epochs": epochs,
        "seeds": args.seeds,
        "imbs": args.imbs,
        "losses": args.losses,
        "val_per_class": VAL_PER_CLASS,
        "prepare_seed": PREPARE_SEED,
        **grid_meta(records, args.jobs, args.threads, started),
    }
    save_results(args.out, meta, summary, records, table, intervals)
    plot(summary, args.losses, args.out / "results.png")
    info(f"wrote {args.out / 'results.json'}, results.md, results.png in {meta['wall_seconds'] / 60:.1f} min")
    result(table)


def run_main(main: Callable[[], None]) -> None:
    """Run a benchmark's main; Ctrl-C says the finished runs are kept and exits 130."""
    try:
        main()
    except KeyboardInterrupt:
        info("interrupted: finished runs are saved, run the same command again to go on")
        raise SystemExit(130) from None


if __name__ == "__main__":
    run_main(main)
