"""benchmarks/fmnist_lt.py's seed-level intervals on synthetic run records: each loss against cross-entropy and
BaGMar, the markdown that states them, and records written before per-image results were kept."""

from __future__ import annotations

from types import ModuleType

import pytest
import torch
from support.scripts import load_benchmark

from bagmar_cli.data import load_split


@pytest.fixture(scope="module")
def fmnist_lt() -> ModuleType:
    return load_benchmark("fmnist_lt")


def _records(fmnist_lt: ModuleType, labels: torch.Tensor, accuracy: dict[str, float]) -> list[dict]:
    """Three seeds per loss, each right on a random share `accuracy[loss]` of the test images."""
    generator = torch.Generator().manual_seed(0)
    records = []
    for loss, share in accuracy.items():
        for seed in range(3):
            correct = torch.rand(labels.numel(), generator=generator) < share
            packed = fmnist_lt.pack_correct(correct)
            records.append({"imb": 10, "loss": loss, "seed": seed, "correct": {"plain": packed, "pn": packed}})
    return records


def test_pack_and_unpack_round_trip(fmnist_lt):
    correct = torch.rand(10_001, generator=torch.Generator().manual_seed(1)) < 0.5
    packed = fmnist_lt.pack_correct(correct)
    assert len(packed) == 2 * 1251 and torch.equal(fmnist_lt.unpack_correct(packed, 10_001), correct)


def test_each_loss_against_ce_and_bagmar(fmnist_lt, digits_data):
    labels = load_split(digits_data, "test")[1]
    losses = ["ce", "bagmar", "focal"]
    records = _records(fmnist_lt, labels, {"ce": 0.5, "bagmar": 0.9, "focal": 0.5})
    intervals = fmnist_lt.seed_intervals(records, {10: digits_data}, losses)
    vs_ce, vs_bagmar = intervals["imb10"]["plain"]["vs_ce"], intervals["imb10"]["plain"]["vs_bagmar"]
    assert set(vs_ce) == {"bagmar", "focal"} and set(vs_bagmar) == {"ce", "focal"}
    top1 = vs_ce["bagmar"]["top1"]
    assert top1["test"] == "hierarchical bootstrap" and len(top1["a_seeds"]) == 3
    assert top1["diff"] > 0.3 and top1["ci"][0] > 0 and top1["distinguishable"]
    assert vs_ce["focal"]["top1"]["ci"][0] < 0 < vs_ce["focal"]["top1"]["ci"][1]
    lines = fmnist_lt.intervals_markdown(intervals, 10, losses)
    # digits-LT imb 10 has medium- and few-shot classes (139 down to 13 training images)
    assert (
        lines[2] == "| loss | | top-1 − CE | medium − CE | few − CE | top-1 − BaGMar | medium − BaGMar | few − BaGMar |"
    )
    bagmar_row = next(line for line in lines if line.startswith("| BaGMar"))
    assert bagmar_row.split("|")[3].strip().endswith("*")  # its top-1 gain over CE is told from 0
    focal_row = next(line for line in lines if line.startswith("| focal"))
    assert not focal_row.split("|")[3].strip().endswith("*")


def test_records_without_per_image_results_get_no_intervals(fmnist_lt, digits_data):
    labels = load_split(digits_data, "test")[1]
    records = _records(fmnist_lt, labels, {"ce": 0.5, "bagmar": 0.6})
    for record in records:
        del record["correct"]
    intervals = fmnist_lt.seed_intervals(records, {10: digits_data}, ["ce", "bagmar"])
    assert intervals == {}
    assert fmnist_lt.intervals_markdown(intervals, 10, ["ce", "bagmar"])[0].startswith("No seed-level intervals")
