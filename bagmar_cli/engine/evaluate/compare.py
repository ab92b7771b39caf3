"""Compare two checkpoints, or two groups of seeds, on the same split: eval's predictions, then `functional.paired`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from bagmar_cli.choices import PosthocMethod
from bagmar_cli.engine.evaluate.evaluator import split_outputs
from bagmar_cli.engine.evaluate.posthoc import posthoc_scores, resolve_posthoc
from bagmar_cli.engine.evaluate.report import AppliedPosthoc
from bagmar_cli.errors import SettingError
from bagmar_cli.functional.metrics import per_class_accuracy, predict
from bagmar_cli.functional.paired import MetricComparison, compare_correct
from bagmar_cli.plots import plot_class_differences

LABELS = {"top1": "top-1", "macro": "macro", "many": "many-shot", "medium": "medium-shot", "few": "few-shot"}


@dataclass
class Scored:
    """One checkpoint's correctness on a split, with what says which data it was scored on."""

    path: Path
    split: str
    dataset: str | None
    classes: list[str]
    train_counts: list[int]
    labels: Tensor
    preds: Tensor
    posthoc: AppliedPosthoc | None

    @property
    def correct(self) -> Tensor:
        """(N,) whether each image is predicted right."""
        return self.preds == self.labels


@dataclass
class CompareOptions:
    """What `bagmar compare` was asked: the checkpoints of each side and how to score and resample them."""

    a: list[Path]
    b: list[Path]
    split: str | None = None
    tau: str = "none"
    method: PosthocMethod | None = None
    data: Path | None = None
    device: str = "auto"
    batch_size: int = 256
    weights: str | None = None
    resamples: int = 2000
    seed: int = 0
    level: float = 0.95
    plot: Path | None = None


@dataclass
class Comparison:
    """The per-metric comparison of side A against side B, and what each side was."""

    options: CompareOptions
    a: list[Scored]
    b: list[Scored]
    metrics: dict[str, MetricComparison]
    plot: Path | None = None

    def to_json(self) -> dict[str, Any]:
        """One object per metric (a, b, diff, ci, p_value, test, distinguishable; per-seed values for groups), and
        a `comparison` object saying what was compared."""
        payload: dict[str, Any] = {name: metric_json(result) for name, result in self.metrics.items()}
        payload["comparison"] = {
            "a": [str(s.path) for s in self.a],
            "b": [str(s.path) for s in self.b],
            "posthoc_a": [_applied(s.posthoc) for s in self.a],
            "posthoc_b": [_applied(s.posthoc) for s in self.b],
            "split": self.a[0].split,
            "n": int(self.a[0].labels.numel()),
            "level": self.options.level,
            "resamples": self.options.resamples,
            "seed": self.options.seed,
            "plot": None if self.plot is None else str(self.plot),
        }
        return payload


def _applied(posthoc: AppliedPosthoc | None) -> dict[str, Any] | None:
    """A side's post-hoc method as the JSON object eval's reports carry too."""
    return None if posthoc is None else posthoc.model_dump()


def metric_json(result: MetricComparison) -> dict[str, Any]:
    """A metric's JSON object; the per-seed lists only for groups of seeds."""
    payload: dict[str, Any] = {
        "a": result.a,
        "b": result.b,
        "diff": result.diff,
        "ci": None if result.ci is None else list(result.ci),
        "p_value": result.p_value,
        "test": result.test,
        "distinguishable": result.distinguishable(),
    }
    if result.a_seeds is not None:
        payload |= {"a_seeds": result.a_seeds, "b_seeds": result.b_seeds}
    return payload


def compare_checkpoints(options: CompareOptions) -> Comparison:
    """Score every checkpoint on the same split, refuse mismatched data, and compare A with B metric by metric."""
    _check(options)
    a = [score_checkpoint(path, options) for path in options.a]
    b = [score_checkpoint(path, options) for path in options.b]
    reference = a[0]
    for other in [*a[1:], *b]:
        refuse_mismatch(reference, other)
    metrics = compare_correct(
        torch.stack([s.correct for s in a]),
        torch.stack([s.correct for s in b]),
        reference.labels,
        torch.tensor(reference.train_counts),
        resamples=options.resamples,
        seed=options.seed,
        level=options.level,
    )
    plot = None
    if options.plot is not None:
        plot = plot_class_differences(class_differences(a, b), torch.tensor(reference.train_counts), options.plot)
    return Comparison(options, a, b, metrics, plot)


def score_checkpoint(path: Path, options: CompareOptions) -> Scored:
    """`path`'s correctness on the split, after its post-hoc method (`tau` auto: what tune-tau recorded in it)."""
    outputs = split_outputs(
        path,
        data=options.data,
        split=options.split,
        device=options.device,
        batch_size=options.batch_size,
        features=options.method == "tau-norm" or options.tau == "auto",
        weights=options.weights,
    )
    posthoc = resolve_posthoc(outputs.ckpt, options.tau, options.method)
    preds = predict(posthoc_scores(posthoc, outputs.ckpt, outputs.logits, outputs.features))
    meta = outputs.ckpt.meta
    return Scored(
        path,
        outputs.split,
        meta.dataset.name if meta.dataset else None,
        list(meta.classes),
        list(meta.train_counts),
        outputs.labels,
        preds,
        posthoc.describe() if posthoc else None,
    )


def refuse_mismatch(first: Scored, other: Scored) -> None:
    """SettingError unless `other` was scored on the same images, classes and training counts as `first`."""
    where = f"{first.path} and {other.path}"
    if first.dataset != other.dataset:
        raise SettingError(f"cannot compare {where}: datasets differ ({first.dataset} vs {other.dataset})")
    if len(first.classes) != len(other.classes) or first.classes != other.classes:
        raise SettingError(f"cannot compare {where}: classes differ ({len(first.classes)} vs {len(other.classes)})")
    if first.split != other.split:
        raise SettingError(f"cannot compare {where}: splits differ ({first.split} vs {other.split})")
    if first.train_counts != other.train_counts:
        raise SettingError(f"cannot compare {where}: trained on different per-class counts (another long-tail draw)")
    if not torch.equal(first.labels, other.labels):
        raise SettingError(f"cannot compare {where}: the {first.split} split holds different images")


def class_differences(a: list[Scored], b: list[Scored]) -> Tensor:
    """(C,) per-class accuracy of A minus B, each side averaged over its seeds (NaN: no test images)."""
    classes = len(a[0].classes)

    def mean(side: list[Scored]) -> Tensor:
        return torch.stack([per_class_accuracy(s.preds, s.labels, classes) for s in side]).mean(dim=0)

    return mean(a) - mean(b)


def verdict(name: str, result: MetricComparison, level: float) -> str:
    """One line: the difference in points, its interval and p-value, and whether it is distinguishable from 0."""
    label = LABELS.get(name, name)
    if result.diff is None or result.ci is None:
        return f"{label}: no test images in this group"
    low, high = (100 * bound for bound in result.ci)
    tell = "distinguishable from zero" if result.distinguishable() else "the data cannot tell them apart"
    return (
        f"{label}: A − B = {100 * result.diff:+.1f} points ({100 * level:g} % CI {low:+.1f} to {high:+.1f}, "
        f"p = {result.p_value:.3g}, {result.test}): {tell} at {100 * level:g} %"
    )


def claim(who: str, over: str, name: str, result: MetricComparison, level: float) -> str:
    """'WHO raises NAME accuracy over OVER by X points (95 % CI L to H)', or that the data cannot tell."""
    label = LABELS.get(name, name)
    if result.diff is None or result.ci is None:
        return f"{who} vs {over}: no {label} test images"
    low, high = (100 * bound for bound in result.ci)
    interval = f"{100 * level:g} % CI {low:.1f} to {high:.1f}"
    if not result.distinguishable():
        return (
            f"{who} vs {over}: {label} accuracy differs by {100 * result.diff:+.1f} points ({interval}); "
            "the interval covers 0, so the data cannot tell"
        )
    change = "raises" if result.diff > 0 else "lowers"
    return f"{who} {change} {label} accuracy over {over} by {100 * abs(result.diff):.1f} points ({interval})"


def _check(options: CompareOptions) -> None:
    """SettingError for an empty side, a seed given twice on one side, or a level outside (0, 1)."""
    if not options.a or not options.b:
        raise SettingError("compare needs at least one checkpoint on each side")
    if not 0.0 < options.level < 1.0:
        raise SettingError(f"level {options.level:g}: expected a number between 0 and 1, such as 0.95")
    if options.resamples < 1:
        raise SettingError(f"resamples {options.resamples}: expected at least 1")
    for side in (options.a, options.b):
        resolved = [path.resolve() for path in side]
        for index, path in enumerate(resolved):
            if path in resolved[:index]:
                raise SettingError(f"checkpoint {side[index]} is given twice on one side; each seed counts once")
