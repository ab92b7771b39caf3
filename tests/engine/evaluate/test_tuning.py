"""engine/evaluate/tuning.py: tune-tau over a real (tiny) run: the search, and what it writes or leaves alone."""

from __future__ import annotations

import shutil
from pathlib import Path

from bagmar_cli.checkpoint import load_checkpoint
from bagmar_cli.engine.evaluate.tuning import tune_tau


def _copy(digits_run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copy(digits_run, tmp_path / "best.safetensors"))


def test_no_write_searches_the_grid_and_changes_no_file(tmp_path: Path, digits_run: Path) -> None:
    ckpt = _copy(digits_run, tmp_path)
    before = ckpt.read_bytes()
    result = tune_tau(ckpt, method="pn", grid="0:1:0.5", write=False, device="cpu")
    assert [row["tau"] for row in result.search.rows] == [0.0, 0.5, 1.0]
    assert result.search.best["tau"] in (0.0, 0.5, 1.0)
    assert result.split == "val" and not result.written and result.plot is None
    assert ckpt.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["best.safetensors"]
    assert result.to_json()["tuned_on_test"] is False


def test_write_records_the_best_tau_in_the_checkpoint(tmp_path: Path, digits_run: Path) -> None:
    ckpt = _copy(digits_run, tmp_path)
    result = tune_tau(ckpt, method="logit-adjust", grid="0:1:1", split="test", device="cpu")
    record = load_checkpoint(ckpt, tensors=False).meta.posthoc
    assert record is not None
    assert (record.method, record.tau, record.split) == ("logit-adjust", result.search.best["tau"], "test")
    assert result.to_json()["tuned_on_test"] is True
    assert result.plot is not None and result.plot.is_file()
