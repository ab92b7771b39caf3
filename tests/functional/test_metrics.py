"""Metrics against hand counts, including the shot-group thresholds of the long-tailed literature."""

import math

import pytest
import torch

from bagmar_cli.functional.metrics import (
    accuracy_summary,
    classification_report,
    confusion_matrix,
    per_class_accuracy,
    predict,
    shot_groups,
    topk_correct,
    worst_confused_pairs,
)


def _one_hot_scores(preds, num_classes):
    """Scores whose argmax is preds: 1 on the predicted class, 0 elsewhere."""
    return torch.nn.functional.one_hot(torch.tensor(preds), num_classes).to(torch.float64)


def test_predict_takes_the_first_of_tied_classes():
    scores = torch.tensor([[0.2, 0.4, 0.4], [0.5, 0.5, 0.0], [0.1, 0.2, 0.7]])
    assert predict(scores).tolist() == [1, 0, 2]


def test_topk_correct_by_hand():
    scores = torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.2, 0.7], [0.4, 0.35, 0.25]])
    labels = torch.tensor([1, 2, 2])
    assert topk_correct(scores, labels, 1).tolist() == [False, True, False]
    assert topk_correct(scores, labels, 2).tolist() == [True, True, False]
    assert topk_correct(scores, labels, 5).tolist() == [True, True, True]  # k capped at 3 classes


def test_per_class_accuracy_by_hand_with_an_empty_class():
    preds = torch.tensor([0, 0, 1, 2, 0, 1])
    labels = torch.tensor([0, 1, 1, 1, 0, 2])
    acc = per_class_accuracy(preds, labels, 4)
    assert acc[:3].tolist() == [1.0, pytest.approx(1 / 3), 0.0]
    assert math.isnan(acc[3])


def test_shot_group_thresholds():
    groups = shot_groups(torch.tensor([101, 100, 20, 19, 0, 5000]))
    assert groups["many"].tolist() == [True, False, False, False, False, True]
    assert groups["medium"].tolist() == [False, True, True, False, False, False]
    assert groups["few"].tolist() == [False, False, False, True, True, False]


# Five classes; train counts put 0 and 4 in many, 1 in medium, 2 and 3 in few; class 3 has no test images.
TRAIN = torch.tensor([200, 50, 10, 5, 150])
LABELS = torch.tensor([0, 0, 0, 4, 1, 1, 2])
PREDS = [0, 0, 0, 0, 1, 0, 1]


def test_report_by_hand():
    report = classification_report(_one_hot_scores(PREDS, 5), LABELS, TRAIN)
    assert list(report) == ["top1", "top5", "many", "medium", "few", "macro", "per_class", "n"]
    assert report["top1"] == pytest.approx(4 / 7)
    assert report["top5"] == 1.0  # five classes: every label is in the top 5
    assert report["many"] == pytest.approx(0.5)  # (3/3 + 0/1) / 2, not pooled 3/4
    assert report["medium"] == pytest.approx(0.5)
    assert report["few"] == 0.0  # class 3 has no test images and is left out
    assert report["macro"] == pytest.approx((1 + 0.5 + 0 + 0) / 4)
    assert report["per_class"] == [1.0, 0.5, 0.0, None, 0.0]
    assert report["n"] == 7


def test_report_top5_by_hand():
    scores = torch.arange(8, dtype=torch.float64).repeat(2, 1)  # ranking 7, 6, 5, 4, 3 on top
    report = classification_report(scores, torch.tensor([3, 2]), torch.full((8,), 50))
    assert report["top5"] == 0.5
    assert report["many"] is None and report["few"] is None


def test_summary_agrees_with_report():
    summary = accuracy_summary(torch.tensor(PREDS), LABELS, TRAIN)
    report = classification_report(_one_hot_scores(PREDS, 5), LABELS, TRAIN)
    assert summary == {key: report[key] for key in summary}


def test_confusion_matrix_by_hand():
    cm = confusion_matrix(torch.tensor([0, 1, 1, 2, 0]), torch.tensor([0, 0, 1, 1, 2]), 3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 1], [1, 0, 0]]


def test_worst_confused_pairs_by_hand():
    cm = torch.tensor([[9, 4, 0], [2, 7, 4], [1, 0, 8]])
    assert worst_confused_pairs(cm, 3) == [(0, 1, 4), (1, 2, 4), (1, 0, 2)]
    assert worst_confused_pairs(cm, 10) == [(0, 1, 4), (1, 2, 4), (1, 0, 2), (2, 0, 1)]  # zeros left out
