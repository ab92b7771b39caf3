"""Every plot writes a PNG that an image reader can open."""

import math

import torch
from PIL import Image

from bagmar_cli.engine.evaluate.tau_search import search_tau
from bagmar_cli.functional.calibration import reliability_bins
from bagmar_cli.plots import (
    named_classes,
    plot_class_differences,
    plot_confused_pairs,
    plot_per_class,
    plot_reliability,
    plot_tau_curve,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _assert_png(path):
    assert path.read_bytes()[:8] == PNG_MAGIC
    with Image.open(path) as image:
        image.verify()
        assert image.size[0] > 50 and image.size[1] > 50


def test_tau_curve(tmp_path):
    gen = torch.Generator().manual_seed(0)
    labels = torch.randint(4, (50,), generator=gen)
    result = search_tau(
        "pn",
        [0.0, 0.5, 1.0],
        logits=torch.randn(50, 4, generator=gen),
        labels=labels,
        counts=torch.tensor([300, 60, 10, 0]),
    )
    path = plot_tau_curve(result, tmp_path / "tau.png")
    assert path == tmp_path / "tau.png"
    _assert_png(path)


def test_reliability(tmp_path):
    probs = torch.softmax(torch.randn(100, 5, generator=torch.Generator().manual_seed(0)), 1)
    bins = reliability_bins(probs, torch.zeros(100, dtype=torch.long))
    _assert_png(plot_reliability(bins, tmp_path / "r.png"))


def test_per_class_with_missing_classes(tmp_path):
    acc = torch.tensor([0.9, math.nan, 0.4, 0.1])
    _assert_png(plot_per_class(acc, torch.tensor([500, 120, 30, 0]), tmp_path / "sub" / "per_class.png"))
    _assert_png(plot_per_class([0.9, None, 0.4, 0.1], torch.tensor([500, 120, 30, 2]), tmp_path / "list.png"))


def test_confused_pairs(tmp_path):
    names = ["cat", "dog", "fox"]
    _assert_png(plot_confused_pairs([(0, 1, 7), (2, 1, 3)], names, tmp_path / "pairs.png"))
    _assert_png(plot_confused_pairs([], names, tmp_path / "none.png"))


def test_the_per_class_plot_names_the_few_shot_and_the_worst_classes(tmp_path):
    """Fewest training images first (ties by index), then the lowest accuracies; each class once, never a class
    without test images among the worst."""
    counts = torch.tensor([500, 3, 40, 8, 200, 1])
    acc = torch.tensor([0.9, 0.8, 0.1, float("nan"), 0.05, 0.7], dtype=torch.float64)
    assert named_classes(acc, counts, k=2) == [5, 1, 4, 2]
    assert named_classes(acc, counts, k=3) == [5, 1, 3, 4, 2]
    names = [f"class-{j}" for j in range(6)]
    _assert_png(plot_per_class(acc, counts, tmp_path / "named.png", class_names=names, title="Per-class (pn τ=1)"))


def test_class_differences(tmp_path):
    diffs = [0.1, -0.05, None, 0.3]
    _assert_png(plot_class_differences(diffs, torch.tensor([500, 60, 10, 0]), tmp_path / "diff.png"))
