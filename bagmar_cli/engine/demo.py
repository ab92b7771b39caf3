"""`bagmar demo`: the whole tool on the embedded digits data, each step the same call the CLI makes."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from bagmar_cli.data import load_manifest, prepare_dataset
from bagmar_cli.engine.evaluator import evaluate, split_outputs
from bagmar_cli.engine.posthoc import resolve_posthoc
from bagmar_cli.engine.trainer import train
from bagmar_cli.engine.tuning import tune_tau
from bagmar_cli.errors import DatasetError
from bagmar_cli.settings import load_settings

DEMO_PRESET = "digits_lt"
VAL_PER_CLASS = 10


@dataclass
class DemoResult:
    """Where the demo put things, and the test reports (raw logits, and with the tuned PN)."""

    data: Path
    run: Path
    checkpoint: Path
    report: dict[str, Any]
    tuned: dict[str, Any]
    extras: dict[str, Path] = field(default_factory=dict)


def run_demo(out: Path, epochs: int | None = None, device: str = "auto") -> DemoResult:
    """prepare digits -> train digits_lt -> tune PN's τ on val -> eval on the untouched test split."""
    settings = load_settings(DEMO_PRESET, flags={"train.epochs": epochs, "train.device": device})
    data = _prepared(out / "data", settings.data.imb)
    settings = load_settings(DEMO_PRESET, flags={"data.root": data, "train.epochs": epochs, "train.device": device})
    run = out / "runs" / f"{DEMO_PRESET}-{datetime.now():%Y%m%d-%H%M%S}"
    checkpoint = train(settings, run)
    tuning = tune_tau(checkpoint, method="pn", device=device)
    outputs = split_outputs(checkpoint, data=None, split="test", device=device)
    report = evaluate(outputs, plots=run)
    tuned = evaluate(outputs, resolve_posthoc(outputs.ckpt, "auto", None))
    result = DemoResult(data, run, checkpoint, report, tuned)
    result.extras["tau plot"] = tuning.plot
    return result


def _prepared(root: Path, imb: float) -> Path:
    """The demo's dataset, reused when an earlier demo already wrote a valid one."""
    path = root / f"digits-lt-imb{imb:g}"
    try:
        load_manifest(path)
        return path
    except DatasetError:
        return prepare_dataset("digits", imb=imb, val_per_class=VAL_PER_CLASS, out=path, overwrite=path.exists())
