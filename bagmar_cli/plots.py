"""Evaluation figures as PNG files: tau curves, reliability diagrams, per-class accuracy, confusions."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Protocol

import torch
from torch import Tensor

from bagmar_cli.files import atomic_write
from bagmar_cli.functional.calibration import ReliabilityBins, ece_from_bins
from bagmar_cli.functional.metrics import FEW_SHOT_BELOW, MANY_SHOT_ABOVE

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_DPI = 120
NAMED_PER_KIND = 5  # the per-class plot names this many few-shot classes and this many worst classes


class TauCurve(Protocol):
    """What the τ plot needs of a search (evaluate.tau_search.TauSearchResult has it): passed in, not imported."""

    @property
    def method(self) -> str: ...  # the post-hoc method, for the title

    @property
    def metric(self) -> str: ...  # the column that picked `best`

    @property
    def rows(self) -> list[dict[str, float | None]]: ...  # per tau: tau, top1, many, medium, few

    @property
    def best(self) -> dict[str, float | None]: ...  # the chosen row


def pyplot() -> ModuleType:
    """matplotlib's pyplot on the file-only Agg backend, imported on the first plot (half a second that commands
    which draw nothing, or fail early, do not pay)."""
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window; must precede the pyplot import
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Figure, path: str | Path) -> Path:
    """Write the figure as a PNG (atomically: a failed write leaves no half file), close it, and return the path."""
    path, buffer = Path(path), io.BytesIO()
    try:
        fig.tight_layout()
        fig.savefig(buffer, format="png", dpi=_DPI)
    finally:
        pyplot().close(fig)
    atomic_write(path, buffer.getvalue())
    return path


def _as_float_list(values: Tensor | Sequence[float | None]) -> list[float]:
    """Plain floats, with None (no samples) as NaN so matplotlib leaves a gap."""
    values = values.tolist() if isinstance(values, Tensor) else values
    return [float("nan") if v is None else float(v) for v in values]


def plot_tau_curve(result: TauCurve, path: str | Path) -> Path:
    """Top-1 and many/medium/few accuracy against tau, the chosen tau marked."""
    fig, ax = pyplot().subplots(figsize=(6, 4))
    taus = _as_float_list([row["tau"] for row in result.rows])  # never None
    for key, style in (("top1", "-o"), ("many", "--"), ("medium", "--"), ("few", "--")):
        ax.plot(taus, _as_float_list([row[key] for row in result.rows]), style, label=key, markersize=3)
    best = result.best["tau"]
    assert best is not None  # every row has its tau
    ax.axvline(best, color="grey", linestyle=":", label=f"best τ = {best:g}")
    ax.set(xlabel="τ", ylabel="accuracy", title=f"{result.method}: τ search (best by {result.metric})")
    ax.legend()
    return _save(fig, path)


def plot_reliability(bins: ReliabilityBins, path: str | Path, *, title: str = "Reliability") -> Path:
    """Reliability diagram: accuracy per confidence bin against the diagonal of perfect calibration."""
    fig, ax = pyplot().subplots(figsize=(4.5, 4.5))
    width = (bins.upper - bins.lower).tolist()
    ax.bar(
        bins.lower.tolist(),
        _as_float_list(bins.accuracy),
        width=width,
        align="edge",
        edgecolor="black",
        label="accuracy",
    )
    ax.plot([0, 1], [0, 1], "k--", label="perfect calibration")
    title = f"{title} (ECE {float(ece_from_bins(bins)):.1%})"
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", ylabel="accuracy", title=title)
    ax.legend(loc="best")
    return _save(fig, path)


def named_classes(per_class_acc: Tensor, train_counts: Tensor, k: int = NAMED_PER_KIND) -> list[int]:
    """The classes the per-class plot names: the `k` with the fewest training images (the few-shot end) and the
    `k` with the lowest accuracy (classes without test images never), each once, in that order."""
    order = sorted(range(len(train_counts)), key=lambda j: (int(train_counts[j]), j))
    scored = [j for j in range(len(per_class_acc)) if not torch.isnan(per_class_acc[j])]
    worst = sorted(scored, key=lambda j: (float(per_class_acc[j]), j))
    return list(dict.fromkeys([*order[:k], *worst[:k]]))


def plot_per_class(
    per_class_acc: Tensor | Sequence[float | None],
    train_counts: Tensor,
    path: str | Path,
    *,
    class_names: Sequence[str] | None = None,
    title: str = "Per-class accuracy",
) -> Path:
    """Accuracy of each class against its number of training images (log x); the few-shot and worst classes
    (`named_classes`) are labelled with their names."""
    fig, ax = pyplot().subplots(figsize=(6, 4))
    counts = train_counts.to(torch.float64).clamp_min(1).tolist()  # log axis: show empty classes at 1
    accuracy = _as_float_list(per_class_acc)
    ax.scatter(counts, accuracy, s=8, alpha=0.6)
    for threshold in (FEW_SHOT_BELOW, MANY_SHOT_ABOVE):  # few | medium | many boundaries
        ax.axvline(threshold, color="grey", linestyle=":", linewidth=1)
    if class_names is not None:
        for j in named_classes(torch.tensor(accuracy, dtype=torch.float64), train_counts):
            ax.annotate(class_names[j], (counts[j], accuracy[j]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set(ylim=(-0.02, 1.02), xlabel="training images", ylabel="accuracy", title=title)
    return _save(fig, path)


def plot_confused_pairs(
    pairs: Sequence[tuple[int, int, int]],
    class_names: Sequence[str],
    path: str | Path,
    *,
    title: str = "Most confused pairs (true → predicted)",
) -> Path:
    """Horizontal bars of the most confused (true -> predicted) pairs, most confused on top."""
    fig, ax = pyplot().subplots(figsize=(6, 1 + 0.3 * max(len(pairs), 1)))
    labels = [f"{class_names[t]} → {class_names[p]}" for t, p, _ in pairs]
    ax.barh(range(len(pairs)), [n for _, _, n in pairs])
    ax.set_yticks(range(len(pairs)), labels)
    ax.invert_yaxis()
    ax.set(xlabel="test images", title=title)
    return _save(fig, path)


def plot_class_differences(diffs: Tensor | Sequence[float | None], train_counts: Tensor, path: str | Path) -> Path:
    """Per-class accuracy of A minus B against training images (log x), the few / medium / many ranges shaded."""
    fig, ax = pyplot().subplots(figsize=(6, 4))
    counts = train_counts.to(torch.float64).clamp_min(1)
    low, high = 0.8 * float(counts.min()), 1.25 * float(counts.max())
    spans = (("few", low, FEW_SHOT_BELOW), ("medium", FEW_SHOT_BELOW, MANY_SHOT_ABOVE), ("many", MANY_SHOT_ABOVE, high))
    for (name, start, end), shade in zip(spans, ("#f4cccc", "#fff2cc", "#d9ead3"), strict=True):
        if end > low and start < high:
            ax.axvspan(max(start, low), min(end, high), color=shade, alpha=0.6, label=name, linewidth=0)
    ax.axhline(0, color="grey", linewidth=1)
    ax.scatter(counts.tolist(), _as_float_list(diffs), s=10, alpha=0.7, color="black")
    ax.set_xscale("log")
    ax.set(xlim=(low, high), xlabel="training images", ylabel="accuracy A − B", title="Per-class difference (A − B)")
    ax.legend(loc="best", fontsize="small")
    return _save(fig, path)
