"""engine/evaluate/evaluator.py: a checkpoint's outputs on a split, its eval report, and the seed summary."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from bagmar_cli.engine.evaluate.evaluator import evaluate, split_outputs
from bagmar_cli.engine.evaluate.report import summarise
from bagmar_cli.errors import SettingError


def test_an_unknown_split_is_a_usage_error_naming_the_splits(digits_run: Path) -> None:
    with pytest.raises(SettingError, match="split 'bogus' not in dataset") as info:
        split_outputs(digits_run, data=None, split="bogus", device="cpu")
    assert "test" in str(info.value)


def test_the_report_scores_the_logits_and_saves_them(tmp_path: Path, digits_run: Path) -> None:
    outputs = split_outputs(digits_run, data=None, split="test", device="cpu")
    assert outputs.logits.shape == (len(outputs.labels), len(outputs.counts))
    report = evaluate(outputs, save_logits=tmp_path / "logits.safetensors", plots=None)
    accuracy = float((outputs.logits.argmax(dim=1) == outputs.labels).double().mean())
    assert report.top1 == pytest.approx(accuracy)
    assert report.n == len(outputs.labels) and report.split == "test" and report.posthoc is None
    assert report.selected_on_reported_split is False  # best.safetensors was selected on val
    assert report.saved_logits == str(tmp_path / "logits.safetensors")
    assert "plots" not in report.to_json()  # not asked: no key, as `eval --json` has always printed
    saved = load_file(tmp_path / "logits.safetensors")
    assert torch.equal(saved["logits"], outputs.logits) and torch.equal(saved["labels"], outputs.labels)


def test_summarise_gives_mean_and_sample_std_of_the_scalar_metrics() -> None:
    summary = summarise([{"top1": 0.5, "few": None, "nll": 1.0}, {"top1": 0.7, "few": None, "nll": 1.0}])
    assert summary["top1"]["mean"] == pytest.approx(0.6)
    assert summary["top1"]["std"] == pytest.approx(0.1414213, rel=1e-5)
    assert summary["nll"] == {"mean": 1.0, "std": 0.0}
    assert "few" not in summary and "top5" not in summary
    assert summarise([{"top1": 0.4}])["top1"] == {"mean": 0.4, "std": 0.0}
