"""Evaluate a checkpoint on a split: logits once, then the pure metrics, calibration and shifted priors."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bagmar_cli.checkpoint import Checkpoint
from bagmar_cli.console import warn
from bagmar_cli.engine.batches import resolve_workers
from bagmar_cli.engine.evaluate.inference import split_outputs_of
from bagmar_cli.engine.evaluate.posthoc import Posthoc, posthoc_scores
from bagmar_cli.engine.evaluate.report import PlotPaths, Report
from bagmar_cli.engine.evaluate.saved_logits import save_logits as write_logits
from bagmar_cli.engine.evaluate.tta import NONE, parse_tta, tta_plan
from bagmar_cli.engine.restore import checkpoint_dataset, load_weights, model_from_checkpoint
from bagmar_cli.engine.runtime import resolve_device
from bagmar_cli.errors import SettingError, WriteError
from bagmar_cli.functional.calibration import ReliabilityBins, ece_from_bins, nll, reliability_bins
from bagmar_cli.functional.metrics import classification_report, confusion_matrix, predict, worst_confused_pairs
from bagmar_cli.functional.posthoc import renormalise
from bagmar_cli.functional.priors import shifted_prior_accuracies
from bagmar_cli.plots import plot_confused_pairs, plot_per_class, plot_reliability


@dataclass
class SplitOutputs:
    """A checkpoint's logits (and features) on one split, with what is needed to score them."""

    ckpt: Checkpoint
    split: str
    logits: torch.Tensor
    labels: torch.Tensor
    features: torch.Tensor | None
    counts: list[int]
    root: Path | None = None  # the dataset directory the split was read from
    tta: str = NONE  # the test-time views the logits are averaged over (`eval.tta`)


def split_outputs(
    ckpt_path: Path,
    *,
    data: Path | None,
    split: str | None,
    device: str = "auto",
    batch_size: int = 256,
    features: bool = False,
    weights: str | None = None,
    tta: str | None = None,
) -> SplitOutputs:
    """Run the model of `ckpt_path` (its `weights`, see `restore.load_weights`) over `split` of its dataset; None:
    the split the dataset's results are reported on (test; val for iNaturalist 2018, which has no test split).
    `tta`: the test-time views (engine/evaluate/tta.py); None: the checkpoint's `eval.tta`."""
    ckpt = load_weights(ckpt_path, weights)
    root, manifest = checkpoint_dataset(ckpt, data)
    split = split or manifest.reported_split or "test"
    if split not in manifest.splits:
        raise SettingError(f"split {split!r} not in dataset {root} (has {', '.join(sorted(manifest.splits))})")
    torch_device = resolve_device(device)
    model = model_from_checkpoint(ckpt).to(torch_device)
    spec = ckpt.meta.model
    mode = parse_tta(tta, ckpt.meta.settings.eval.tta)
    outputs = split_outputs_of(
        model,
        root,
        split,
        preprocess=spec.preprocess,
        mean=spec.mean,
        std=spec.std,
        batch_size=batch_size,
        device=torch_device,
        workers=resolve_workers(ckpt.meta.settings.data.num_workers, per_sample=True),
        features=features,
        tta=tta_plan(mode, spec),
    )
    counts = list(ckpt.meta.train_counts)
    return SplitOutputs(ckpt, split, outputs.logits, outputs.labels, outputs.features, counts, Path(root), mode)


def evaluate(
    outputs: SplitOutputs,
    posthoc: Posthoc | None = None,
    *,
    save_logits: Path | None = None,
    plots: Path | None = None,
    plots_asked: bool = True,
) -> Report:
    """The report of one checkpoint (what `bagmar eval` prints as JSON).

    Plots go to `plots`; when that folder was not asked for (the default beside the checkpoint), a failure to
    write them is a warning and `plots` is None in the report, so the result is never lost to a plot.
    """
    meta = outputs.ckpt.meta
    scores = posthoc_scores(posthoc, outputs.ckpt, outputs.logits, outputs.features)
    counts = torch.tensor(outputs.counts)
    accuracy = classification_report(scores, outputs.labels, counts)
    probs = _probabilities(scores, posthoc)
    bins = reliability_bins(probs, outputs.labels)
    per_class = torch.tensor([float("nan") if a is None else a for a in accuracy["per_class"]], dtype=torch.float64)
    extras: dict[str, Any] = {}
    if save_logits is not None:  # raw logits and the scores evaluated, with what names their rows and columns
        extras["saved_logits"] = str(write_logits(Path(save_logits), outputs, scores, posthoc))
    if plots is not None:
        extras["plots"] = _plots_or_warning(plots, outputs, scores, per_class, bins, posthoc, asked=plots_asked)
    return Report.model_validate(
        accuracy
        | {
            "nll": float(nll(probs, outputs.labels)),
            "ece": float(ece_from_bins(bins)),
            "shifted_priors": shifted_prior_accuracies(per_class, counts),
            "split": outputs.split,
            "checkpoint": str(outputs.ckpt.path),
            "posthoc": posthoc.describe() if posthoc else None,
            "tta": outputs.tta,
            "selected_on_reported_split": meta.selection_split == outputs.split,
            "tuned_on_reported_split": bool(
                posthoc and meta.posthoc and meta.posthoc.split == outputs.split and posthoc.source == "recorded"
            ),
        }
        | extras
    )


def _probabilities(scores: torch.Tensor, posthoc: Posthoc | None) -> torch.Tensor:
    """PN scores are already (unnormalised) probabilities; everything else goes through softmax."""
    if posthoc is not None and posthoc.method == "pn":
        return renormalise(scores)
    return torch.softmax(scores.double(), dim=1)


def _plots_or_warning(
    folder: Path,
    outputs: SplitOutputs,
    scores: torch.Tensor,
    per_class: torch.Tensor,
    bins: ReliabilityBins,
    posthoc: Posthoc | None,
    *,
    asked: bool,
) -> PlotPaths | None:
    """The plots' paths; a default folder that cannot take them is a warning (None), an asked-for one an error."""
    try:
        return _plots(folder, outputs, scores, per_class, bins, posthoc)
    except WriteError as exc:
        if asked:
            raise
        warn(f"no plots: {exc}")
        return None


def plot_tag(posthoc: Posthoc | None) -> str:
    """What a plot's name and title say of the scores: `raw` (the logits), else the method and τ (`pn-tau1.2`)."""
    return "raw" if posthoc is None else f"{posthoc.method}-tau{posthoc.tau:g}"


def _plots(
    folder: Path,
    outputs: SplitOutputs,
    scores: torch.Tensor,
    per_class: torch.Tensor,
    bins: ReliabilityBins,
    posthoc: Posthoc | None,
) -> PlotPaths:
    """The three plots, named eval-SPLIT-TAG-*.png (TAG from `plot_tag`), so raw and post-hoc runs keep theirs."""
    tag = plot_tag(posthoc)
    stem, said = f"eval-{outputs.split}-{tag}", f"{outputs.split}, {'raw logits' if posthoc is None else tag}"
    preds = predict(scores)
    cm = confusion_matrix(preds, outputs.labels, scores.shape[1])
    classes = outputs.ckpt.meta.classes
    per_class_plot = plot_per_class(
        per_class,
        torch.tensor(outputs.counts),
        folder / f"{stem}-per-class.png",
        class_names=classes,
        title=f"Per-class accuracy ({said})",
    )
    confused = plot_confused_pairs(
        worst_confused_pairs(cm, 10), classes, folder / f"{stem}-confused.png", title=f"Most confused pairs ({said})"
    )
    reliability = plot_reliability(bins, folder / f"{stem}-reliability.png", title=f"Reliability ({said})")
    return PlotPaths(per_class=str(per_class_plot), confused_pairs=str(confused), reliability=str(reliability))
