"""Classification metrics for long-tailed evaluation: top-k, per-class, shot groups, confusions."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

MANY_SHOT_ABOVE = 100  # many-shot: more than 100 training images
FEW_SHOT_BELOW = 20  # few-shot: fewer than 20; medium-shot is 20-100 inclusive
GROUPS = ("many", "medium", "few")


def predict(scores: Tensor) -> Tensor:
    """Predicted class of each row, the first on ties; max() is 2-3x faster than argmax() on CPU."""
    return scores.max(dim=1).indices


def topk_correct(scores: Tensor, labels: Tensor, k: int) -> Tensor:
    """Boolean (N,) mask: the label is among the k highest scores (k capped at the class count)."""
    k = min(k, scores.shape[1])
    return (scores.topk(k, dim=1).indices == labels[:, None]).any(dim=1)


def per_class_accuracy(preds: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """Float64 (C,) accuracy of each class; NaN for classes with no samples."""
    total = torch.bincount(labels, minlength=num_classes).to(torch.float64)
    correct = torch.bincount(labels[preds == labels], minlength=num_classes).to(torch.float64)
    return torch.where(total > 0, correct / total.clamp_min(1.0), math.nan)


def shot_groups(train_counts: Tensor) -> dict[str, Tensor]:
    """Class masks: many (>100 training images), medium (20-100 inclusive), few (<20)."""
    many = train_counts > MANY_SHOT_ABOVE
    few = train_counts < FEW_SHOT_BELOW
    return {"many": many, "medium": ~many & ~few, "few": few}


def nan_mean(values: Tensor) -> float | None:
    """Mean of the non-NaN entries, or None when there are none."""
    kept = values[~values.isnan()]
    return float(kept.mean()) if kept.numel() else None


def accuracy_summary(preds: Tensor, labels: Tensor, train_counts: Tensor) -> dict[str, float | None]:
    """Top-1, macro and many/medium/few accuracy (means of per-class accuracies) from predictions."""
    per_class = per_class_accuracy(preds, labels, train_counts.numel())
    summary: dict[str, float | None] = {"top1": float((preds == labels).to(torch.float64).mean())}
    for name, mask in shot_groups(train_counts).items():
        summary[name] = nan_mean(per_class[mask])
    summary["macro"] = nan_mean(per_class)
    return summary


def classification_report(scores: Tensor, labels: Tensor, train_counts: Tensor) -> dict[str, Any]:
    """JSON-ready report: top1, top5, many, medium, few, macro (fractions), per_class, n."""
    preds = predict(scores)
    summary = accuracy_summary(preds, labels, train_counts)
    per_class = per_class_accuracy(preds, labels, scores.shape[1]).tolist()
    return {
        "top1": summary["top1"],
        "top5": float(topk_correct(scores, labels, 5).to(torch.float64).mean()),
        **{key: summary[key] for key in (*GROUPS, "macro")},
        "per_class": [None if math.isnan(a) else a for a in per_class],
        "n": int(labels.numel()),
    }


def confusion_matrix(preds: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """Int64 (C, C) counts; row = true class, column = predicted class."""
    flat = torch.bincount(labels * num_classes + preds, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)


def worst_confused_pairs(cm: Tensor, k: int) -> list[tuple[int, int, int]]:
    """The k largest off-diagonal cells as (true, predicted, count), most first, ties by index; no zeros."""
    off = cm.clone()
    off.fill_diagonal_(0)
    counts, flat = torch.sort(off.flatten(), descending=True, stable=True)
    num_classes = cm.shape[1]
    pairs = zip(counts[:k].tolist(), flat[:k].tolist(), strict=True)
    return [(i // num_classes, i % num_classes, n) for n, i in pairs if n > 0]
