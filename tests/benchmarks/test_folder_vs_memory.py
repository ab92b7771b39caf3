"""benchmarks/folder_vs_memory.py: the tables it prints (per seed, mean ± std, the gap), and an in-memory dataset
turned into 3 equal channels for the grey-as-RGB ablation."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import folder_vs_memory

        yield folder_vs_memory
    finally:
        sys.path.remove(str(BENCHMARKS))


def run(top1: float, loss: float = 0.5) -> dict:
    return {"top1": top1, "best_top1": top1, "loss_last_epoch": loss, "seconds": 10.0}


def test_the_comparison_table_shows_each_seed_the_mean_and_the_gap(bench):
    runs = {
        "memory": {1: {0: run(0.60), 1: run(0.70)}},
        "folder": {1: {0: run(0.58, 0.7), 1: run(0.66, 0.9)}},
    }
    lines = bench.comparison_table(runs).splitlines()
    assert lines[2] == "| 1 | memory | 60.0 | 70.0 | 65.0 ± 7.1 | 0.500 | 10–10 |"
    assert lines[3] == "| 1 | folder | 58.0 | 66.0 | 62.0 ± 5.7 | 0.800 | 10–10 |"
    assert lines[4] == "| 1 | gap (folder − memory) | -2.0 | -4.0 | -3.0 ± 1.4 | | |"


def test_the_ablation_table_marks_seeds_not_run(bench):
    lines = bench.ablation_table({"memory": {0: run(0.5), 1: run(0.7)}, "crop": {0: run(0.4, 0.9)}}).splitlines()
    assert lines[2] == "| memory | 50.0 | 70.0 | 60.0 ± 14.1 | 0.500 | 10–10 |"
    assert lines[3] == "| crop | 40.0 | — | 40.0 ± 0.0 | 0.900 | 10–10 |"


def test_grey_as_rgb_repeats_the_channel_and_its_statistics(bench, digits_data, tmp_path):
    from bagmar_cli.data import load_manifest, load_split

    out = bench.as_rgb(digits_data, tmp_path / "rgb")
    grey, rgb = load_manifest(digits_data), load_manifest(out)
    assert rgb.image_size == [3, 8, 8] and rgb.mean == grey.mean * 3 and rgb.std == grey.std * 3
    images, labels = load_split(out, "train")
    original, original_labels = load_split(digits_data, "train")
    assert torch.equal(images, original.repeat(1, 3, 1, 1)) and torch.equal(labels, original_labels)
