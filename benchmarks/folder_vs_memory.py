"""The same Fashion-MNIST-LT images trained from PNG folders and from memory, short runs and the full recipe (issue 24).

Fashion-MNIST (read offline from /usr/share/datasets/fashion-mnist, Debian's dataset-fashion-mnist, or
$BAGMAR_DATA_DIR/downloads) is written once as `{train,test}/<label>_<class>/<index>.png`. For each seed S:

- memory: `bagmar prepare fashion_mnist --imb 100 --seed S`
- folder: `bagmar prepare folder --root pngs --imb 100 --seed S --image-size 28` (what prepare's warning about
  upscaled small images suggests; the manifest then records the images' 28x28 size, which picks the pad-and-crop)

(the two manifests' train and test counts are checked equal), then both train
`bagmar train --preset fashion_mnist_lt --seed S --epochs E --device cpu --set data.num_workers=0` for each E in
--epochs (8 is the preset's full recipe). The number reported is the last epoch's test top-1 from metrics.jsonl
(no post-hoc; not the best epoch, which the preset selects on test).

`--ablate` instead trains one epoch of one-factor-at-a-time variants of the folder path (see VARIANTS), to find
what made the folder path slow before the fix. Every run is one process with OMP_NUM_THREADS and
torch threads = --threads (stated in the output). Results: a JSON file and a Markdown table under --results.

Run: .venv/bin/python benchmarks/folder_vs_memory.py [--seeds 0 1 2] [--epochs 1 3 8] [--ablate]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BAGMAR = [sys.executable, "-m", "bagmar_cli"]
# one-factor-at-a-time variants of the folder path at 1 epoch: name -> (prepare folder options, train --set options,
# manifest edit). "fixed" is the folder path now; each other row changes one thing of it (or of memory).
VARIANTS: dict[str, tuple[list[str], list[str], str | None]] = {
    "memory": ([], [], None),
    "memory, grey as RGB": ([], [], "rgb"),  # the in-memory recipe on the images as 3 equal channels
    "fixed: pad-and-crop 2 px, 28 px, eval 28, ImageNet mean/std": (["--image-size", "28"], [], None),
    "RandomResizedCrop scale 0.08-1 (the old default)": (["--image-size", "28"], [], "old"),
    "RandomResizedCrop scale 0.85-1 (old benchmark setting)": (
        ["--image-size", "28"],
        ["data.crop_scale_min=0.85"],
        "old",
    ),
    "measured mean/std": (["--image-size", "28", "--measure-stats"], [], None),
    "eval resize 32 then crop 28": (["--image-size", "28", "--eval-resize", "32"], [], None),
    "old default: 224 px, RandomResizedCrop 0.08-1, eval 256/224": ([], [], "old"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/bagmar-folder-vs-memory"))
    parser.add_argument("--results", type=Path, default=HERE / "results")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, nargs="+", default=[1, 3, 8])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--ablate", action="store_true", help="one-epoch one-factor-at-a-time variants instead")
    parser.add_argument("--variants", nargs="+", help="--ablate: only these (by name prefix)")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    pngs = write_pngs(args.work)
    print(f"# {args.threads} thread(s) per run (OMP_NUM_THREADS and torch), CPU, seeds {args.seeds}", flush=True)
    if args.ablate:
        chosen = [v for v in VARIANTS if not args.variants or any(v.startswith(p) for p in args.variants)]
        rows = {v: {s: ablation_run(args, pngs, v, s) for s in args.seeds} for v in chosen}
        save(args, "folder_vs_memory_ablation", {"epochs": 1, "runs": rows}, ablation_table(rows))
        return
    runs: dict[str, dict[int, dict[int, dict[str, float]]]] = {"memory": {}, "folder": {}}
    for epochs in args.epochs:
        for by_epochs in runs.values():
            by_epochs[epochs] = {}
        for seed in args.seeds:
            mem, folder = prepare_pair(args.work, pngs, seed)
            for path, data in (("memory", mem), ("folder", folder)):
                runs[path][epochs][seed] = train(args, data, f"{path}-s{seed}-e{epochs}", seed, epochs)
                print(f"{path} seed {seed} epochs {epochs}: {runs[path][epochs][seed]}", flush=True)
    save(args, "folder_vs_memory", {"runs": runs}, comparison_table(runs))


def write_pngs(work: Path) -> Path:
    """Fashion-MNIST as PNG class folders under work/pngs, written once (file names: the original index)."""
    pngs = work / "pngs"
    if (pngs / ".complete").exists():
        return pngs
    from PIL import Image

    from bagmar_cli.data.sources.fashion_mnist import CLASSES, load_fashion_mnist

    shutil.rmtree(pngs, ignore_errors=True)
    data = load_fashion_mnist(None)
    for split, images, labels in (
        ("train", data.train_images, data.train_labels), ("test", data.test_images, data.test_labels),
    ):  # fmt: skip
        for index, (image, label) in enumerate(zip(images, labels.tolist(), strict=True)):
            folder = pngs / split / f"{label}_{CLASSES[label].replace('/', '-')}"  # sorts in label order
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image[0]).save(folder / f"{index:05d}.png")
    (pngs / ".complete").touch()
    return pngs


def bagmar(*args: object) -> str:
    """Run the bagmar CLI; its stdout (stderr goes to work/log.txt through the caller's redirection)."""
    done = subprocess.run([*BAGMAR, *map(str, args)], capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"bagmar {' '.join(map(str, args))} failed:\n{done.stderr[-2000:]}")
    return done.stdout


def prepare(work: Path, pngs: Path, seed: int, options: list[str] | None = None, name: str = "folder") -> Path:
    """`prepare folder` of the PNGs (or `prepare fashion_mnist` for name "memory") at imb 100 and `seed`."""
    out = work / f"{name}-{seed}"
    if name == "memory":
        bagmar("prepare", "fashion_mnist", "--imb", 100, "--seed", seed, "--out", out, "--overwrite")
    else:
        bagmar("prepare", "folder", "--root", pngs, "--imb", 100, "--seed", seed, *(options or []), "--out", out,
               "--overwrite")  # fmt: skip
    return out


def prepare_pair(work: Path, pngs: Path, seed: int) -> tuple[Path, Path]:
    """The in-memory and the folder dataset of `seed`, their train and test counts checked equal."""
    mem, folder = prepare(work, pngs, seed, name="memory"), prepare(work, pngs, seed, ["--image-size", "28"])
    for split in ("train", "test"):
        counts = [json.loads((d / "manifest.json").read_text())["splits"][split]["counts"] for d in (mem, folder)]
        assert counts[0] == counts[1], (split, counts)
    return mem, folder


def train(args: argparse.Namespace, data: Path, name: str, seed: int, epochs: int, sets: list[str] = ()) -> dict:
    """Train the fashion_mnist_lt recipe on `data`; last-epoch test top-1, best test top-1, steps, seconds."""
    out = args.work / "runs" / name
    start = time.perf_counter()
    options = [arg for item in ["data.num_workers=0", *sets] for arg in ("--set", item)]
    bagmar("train", "--data", data, "--preset", "fashion_mnist_lt", "--seed", seed, "--epochs", epochs,
           "--device", "cpu", "--out", out, "--overwrite", *options)  # fmt: skip
    seconds = time.perf_counter() - start
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {
        "top1": records[-1]["test"]["top1"],
        "best_top1": max(r["test"]["top1"] for r in records),
        "loss_last_epoch": records[-1]["loss"],
        "seconds": round(seconds, 1),
    }


def ablation_run(args: argparse.Namespace, pngs: Path, variant: str, seed: int) -> dict:
    """One epoch of `variant` (VARIANTS) at `seed`."""
    options, sets, edit = VARIANTS[variant]
    slug = "".join(c if c.isalnum() else "-" for c in variant.lower())[:40]
    if variant.startswith("memory"):
        data = prepare(args.work, pngs, seed, name="memory")
        if edit == "rgb":
            data = as_rgb(data, args.work / f"memory-rgb-{seed}")
    else:
        data = prepare(args.work, pngs, seed, options, name=f"abl-{slug}")
        if edit == "old":  # a manifest from before the fix: no native_size, so the random-resized crop
            path = data / "manifest.json"
            manifest = json.loads(path.read_text())
            del manifest["native_size"]
            # at 28 px the old benchmark's --eval-resize 28 (as "fixed"); at 224 the old default (256/224)
            manifest["eval_resize"] = 28 if "--image-size" in options else None
            path.write_text(json.dumps(manifest, indent=2) + "\n")
    result = train(args, data, f"abl-{slug}-s{seed}", seed, 1, sets)
    print(f"{variant} seed {seed}: {result}", flush=True)
    return result


def as_rgb(mem: Path, out: Path) -> Path:
    """The in-memory dataset `mem` with its grey images repeated into 3 channels (and mean/std with them)."""
    from bagmar_cli.data.manifest import Manifest, SplitInfo, load_manifest, write_manifest
    from bagmar_cli.data.store.tensors import load_split, save_split

    manifest = load_manifest(mem)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    splits: dict[str, SplitInfo] = {}
    for split in manifest.splits:
        images, labels = load_split(mem, split)
        splits[split] = save_split(out, split, images.repeat(1, 3, 1, 1).numpy(), labels.numpy(), manifest.num_classes)
    rgb = manifest.model_dump() | {
        "image_size": [3, *manifest.image_size[1:]],
        "mean": manifest.mean * 3,
        "std": manifest.std * 3,
    }
    write_manifest(out, Manifest.model_validate(rgb | {"splits": {k: v.model_dump() for k, v in splits.items()}}))
    return out


def mean_std(values: list[float]) -> str:
    """`mean ± std` in percent (sample std; 0 for one value)."""
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.1f} ± {100 * sd:.1f}"


def comparison_table(runs: dict) -> str:
    """Markdown: per epochs, per path, each seed's last-epoch test top-1, mean ± std; then the gap."""
    seeds = sorted(next(iter(runs["memory"].values())))
    lines = [
        "| epochs | path | "
        + " | ".join(f"seed {s}" for s in seeds)
        + " | mean ± std | last epoch's training loss, mean | seconds per run |",
        "|---|---|" + "---|" * len(seeds) + "---|---|---|",
    ]
    for epochs in runs["memory"]:
        for path in ("memory", "folder"):
            got = runs[path][epochs]
            cells = " | ".join(f"{100 * got[s]['top1']:.1f}" for s in seeds)
            secs = [got[s]["seconds"] for s in seeds]
            loss = statistics.mean(got[s]["loss_last_epoch"] for s in seeds)
            lines.append(
                f"| {epochs} | {path} | {cells} | {mean_std([got[s]['top1'] for s in seeds])} | {loss:.3f} | "
                f"{min(secs):.0f}–{max(secs):.0f} |"
            )
        gap = [runs["folder"][epochs][s]["top1"] - runs["memory"][epochs][s]["top1"] for s in seeds]
        lines.append(f"| {epochs} | gap (folder − memory) | " + " | ".join(f"{100 * g:+.1f}" for g in gap)
                     + f" | {mean_std(gap)} | | |")  # fmt: skip
    return "\n".join(lines)


def ablation_table(rows: dict) -> str:
    """Markdown: per variant, each seed's test top-1 after one epoch ("—": not run), mean ± std, training loss."""
    seeds = sorted({seed for got in rows.values() for seed in got})
    lines = [
        "| variant (one epoch) | "
        + " | ".join(f"seed {s}" for s in seeds)
        + " | mean ± std | training loss, mean | seconds per run |",
        "|---|" + "---|" * len(seeds) + "---|---|---|",
    ]
    for variant, got in rows.items():
        cells = " | ".join(f"{100 * got[s]['top1']:.1f}" if s in got else "—" for s in seeds)
        secs = [run["seconds"] for run in got.values()]
        loss = statistics.mean(run["loss_last_epoch"] for run in got.values())
        lines.append(
            f"| {variant} | {cells} | {mean_std([run['top1'] for run in got.values()])} | {loss:.3f} | "
            f"{min(secs):.0f}–{max(secs):.0f} |"
        )
    return "\n".join(lines)


def save(args: argparse.Namespace, name: str, payload: dict, table: str) -> None:
    """Write results/<name>.json and .md, and print the table."""
    header = (
        f"`benchmarks/folder_vs_memory.py {' '.join(sys.argv[1:])}`, {time.strftime('%Y-%m-%d')}, CPU, "
        f"{args.threads} thread(s) per run (OMP_NUM_THREADS, torch), seeds {args.seeds}; last-epoch test top-1 (%)"
    )
    args.results.mkdir(parents=True, exist_ok=True)
    payload = {"command": sys.argv[1:], "threads": args.threads, **payload}
    (args.results / f"{name}.json").write_text(json.dumps(payload, indent=2) + "\n")
    (args.results / f"{name}.md").write_text(f"{header}\n\n{table}\n")
    print(f"{header}\n\n{table}")


if __name__ == "__main__":
    main()
