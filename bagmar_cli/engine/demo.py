"""`bagmar demo`: the whole tool on the embedded digits data, each step the same call the CLI makes."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from PIL import Image

from bagmar_cli.data import load_manifest, load_split, prepare_dataset
from bagmar_cli.engine.evaluator import evaluate, split_outputs
from bagmar_cli.engine.exporter import ExportOptions, export_model
from bagmar_cli.engine.posthoc import resolve_posthoc
from bagmar_cli.engine.predictor import predict_images
from bagmar_cli.engine.trainer import train
from bagmar_cli.engine.tuning import tune_tau
from bagmar_cli.errors import DatasetError
from bagmar_cli.settings import load_settings

DEMO_PRESET = "digits_lt"
VAL_PER_CLASS = 10
SAMPLES = 20  # test images written as PNG files for the predict step


@dataclass
class DemoResult:
    """Where the demo put things, and the test reports (raw logits, and with the tuned PN)."""

    data: Path
    run: Path
    checkpoint: Path
    report: dict[str, Any]
    tuned: dict[str, Any]
    predicted: tuple[int, int] = (0, 0)  # (correct, total) of `predict` on the sample PNGs
    extras: dict[str, Path] = field(default_factory=dict)


def run_demo(out: Path, epochs: int | None = None, device: str = "auto") -> DemoResult:
    """prepare digits -> train -> tune PN's τ on val -> eval on test -> export ONNX -> predict PNG files."""
    settings = load_settings(DEMO_PRESET, flags={"train.epochs": epochs, "train.device": device})
    data = _prepared(out / "data", settings.data.imb)
    settings = load_settings(DEMO_PRESET, flags={"data.root": data, "train.epochs": epochs, "train.device": device})
    run = out / "runs" / f"{DEMO_PRESET}-{datetime.now():%Y%m%d-%H%M%S}"
    checkpoint = train(settings, run)
    tuning = tune_tau(checkpoint, method="pn", device=device)
    outputs = split_outputs(checkpoint, data=None, split="test", device=device)
    report = evaluate(outputs, plots=run)
    tuned = evaluate(outputs, resolve_posthoc(outputs.ckpt, "auto", None))
    onnx = export_model(ExportOptions(checkpoint=checkpoint, format="onnx"))
    samples, labels = _sample_pngs(data, run / "samples")
    entries = list(predict_images(onnx, [samples]))
    correct = sum(entry["top_k"][0]["index"] == labels[Path(entry["path"]).name] for entry in entries)
    result = DemoResult(data, run, checkpoint, report, tuned, (correct, len(entries)))
    result.extras |= {"tau plot": tuning.plot, "onnx": onnx, "samples": samples}
    return result


def _sample_pngs(data: Path, folder: Path) -> tuple[Path, dict[str, int]]:
    """Write the first SAMPLES test images as PNG files (what a user would hand to `bagmar predict`)."""
    images, labels = load_split(data, "test")
    folder.mkdir(parents=True, exist_ok=True)
    truth = {}
    for index in range(0, len(labels), max(len(labels) // SAMPLES, 1))[:SAMPLES]:
        name = f"test-{index:04d}.png"
        Image.fromarray(images[index].squeeze(0).numpy(), mode="L").save(folder / name)
        truth[name] = int(labels[index])
    return folder, truth


def _prepared(root: Path, imb: float) -> Path:
    """The demo's dataset, reused when an earlier demo already wrote a valid one."""
    path = root / f"digits-lt-imb{imb:g}"
    try:
        load_manifest(path)
        return path
    except DatasetError:
        return prepare_dataset("digits", imb=imb, val_per_class=VAL_PER_CLASS, out=path, overwrite=path.exists())
