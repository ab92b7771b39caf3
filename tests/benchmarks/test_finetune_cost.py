"""benchmarks/finetune_cost.py and finetune_gpu.py on timm's tiny test_vit: the report's structure, not its timings."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from support.scripts import BENCHMARKS, load_benchmark


@pytest.fixture(scope="module")
def cost():
    return load_benchmark("finetune_cost")


@pytest.fixture(scope="module")
def report(cost):
    return cost.run("test_vit", batch=2, steps=2, warmup=0, threads=1, classes=10, rank=None, memory=False)


def test_every_variant_is_timed_and_counted(cost, report) -> None:
    rows = {row["variant"]: row for row in report["rows"]}
    assert list(rows) == list(cost.variants()) and {"full", "linear probe", "lora", "adaptformer"} <= set(rows)
    assert report["threads"] == 1 and report["size"] == 160 and report["rank"] is None
    assert all(len(row["step_s"]) == 2 and row["median_step_s"] > 0 for row in rows.values())
    assert len({row["total"] - row["adapters"] for row in rows.values()}) == 1  # the same base model in each
    full, probe = rows["full"], rows["linear probe"]
    assert full["trainable"] == full["total"] and probe["trainable"] == probe["head"] == 64 * 10  # cosine head
    for name in ("lora", "adaptformer"):
        assert rows[name]["adapters"] > 0 and rows[name]["trainable"] == rows[name]["adapters"] + rows[name]["head"]
        assert rows[name]["trained_file_bytes"] < report["full_file_bytes"] and rows[name]["width"] >= 1
    assert rows["adaptformer"]["width"] == 1 and full["width"] is None  # LIFT's rule: 10 classes / 12 -> 1
    assert all(row["peak_rss_growth_mib"] is None for row in rows.values()) and report["memory"] is None


def test_the_aims_and_the_markdown(cost, report) -> None:
    checks = cost.aims(report)
    adapted = [row["variant"] for row in report["rows"] if row["adapters"]]
    assert [check["variant"] for check in checks] == [name for name in adapted for _ in range(4)]
    assert all(isinstance(check["holds"], bool) for check in checks)
    lines = cost.render(report)
    assert lines[0].startswith("## Fine-tuning cost: test_vit (random weights), 160 px, batch 2, 10 classes, CPU, 1")
    table = [line for line in lines if line.startswith("| ") and "× full" not in line and " aim " not in line]
    assert [line.split(" | ")[0][2:] for line in table] == [*[r["variant"] for r in report["rows"]], *[
        c["variant"] for c in checks]]  # fmt: skip
    assert "load average" in lines[2] and "not measured" in "\n".join(lines)
    json.dumps({**report, "aims": checks})  # what --json writes


@pytest.mark.slow  # a second interpreter importing torch, timm and peft: about 10 s of CPU
def test_peak_memory_is_measured_in_a_fresh_process(cost) -> None:
    growth = cost.peak_rss_growth("full", "test_vit", classes=10, rank=None, batch=2, threads=1)
    assert 0 < growth < 1024  # MiB: gradients, momentum and activations of a 0.3 M parameter model


def test_the_gpu_recipe_runs_its_dry_run_on_the_cpu(cost) -> None:
    sys.path.insert(0, str(BENCHMARKS))  # finetune_gpu imports finetune_cost from its own folder
    try:
        gpu = load_benchmark("finetune_gpu")
        rows = gpu.measure("test_vit", torch.device("cpu"), classes=10, rank=None, batch=2, steps=1, warmup=0)
    finally:
        sys.path.remove(str(BENCHMARKS))
    assert [row["variant"] for row in rows] == [name for name in cost.variants() if name != "linear probe"]
    assert all(row["images_per_s"] > 0 and row["peak_memory_bytes"] is None for row in rows)
    assert rows[0]["epoch_min"] == pytest.approx(115_846 / rows[0]["images_per_s"] / 60)
    lines = gpu.render(rows, "cpu", "test_vit", 2, 160)
    assert lines[0].startswith("| variant (test_vit, batch 2, 160 px, bf16) | trainable | images/s (cpu)")
    assert len(lines) == 2 + len(rows) and lines[2].endswith(" | - |")
