"""`bagmar eval --save-logits`: one file per checkpoint with raw logits, the evaluated scores, labels, the rows'
images, class names, method and τ, read back as outside analysis would."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from support.bad_input import assert_one_error_line

from bagmar_cli.checkpoint import load_checkpoint
from bagmar_cli.engine.evaluate.saved_logits import load_logits


@pytest.fixture
def two_runs(digits_run: Path, tmp_path: Path) -> list[Path]:
    """The session's checkpoint, and a copy of it in another run folder (a second seed would look the same)."""
    other = tmp_path / "seed1"
    other.mkdir()
    return [digits_run, Path(shutil.copy(digits_run, other / "best.safetensors"))]


def test_several_checkpoints_each_get_their_file_with_everything_to_name_the_rows(cli, two_runs, tmp_path):
    folder = tmp_path / "logits"
    outcome = cli("eval", *two_runs, "--no-plots", "--tau", "1.0", "--method", "pn", "--json", "--save-logits", folder)
    assert outcome.code == 0, outcome.err
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted(f"{ckpt.parent.name}-best.logits.safetensors" for ckpt in two_runs)
    classes = load_checkpoint(two_runs[0], tensors=False).meta.classes
    reports = outcome.json()["checkpoints"]
    for ckpt, report in zip(two_runs, reports, strict=True):
        saved = load_logits(Path(report["saved_logits"]))
        n = report["n"]
        assert saved.logits.shape == saved.scores.shape == (n, len(classes)) and saved.labels.shape == (n,)
        assert (saved.method, saved.tau, saved.split, saved.checkpoint) == ("pn", 1.0, "test", str(ckpt))
        assert saved.classes == list(classes) and saved.items == [f"test:{i}" for i in range(n)]
        assert not torch.allclose(saved.scores, saved.logits)  # PN's scores, not the logits again
        top1 = (saved.scores.argmax(1) == saved.labels).double().mean().item()
        assert top1 == pytest.approx(report["top1"])  # the scores eval evaluated


def test_raw_logits_are_saved_as_their_own_scores(cli, digits_run, tmp_path):
    path = tmp_path / "raw.safetensors"
    assert cli("eval", digits_run, "--no-plots", "--save-logits", path).code == 0
    saved = load_logits(path)
    assert saved.method is None and saved.tau is None and torch.equal(saved.scores, saved.logits)


def test_one_file_name_for_several_checkpoints_is_refused(cli, two_runs, tmp_path):
    outcome = cli("eval", *two_runs, "--no-plots", "--save-logits", tmp_path / "l.safetensors")
    assert_one_error_line(outcome, 2, "with several checkpoints, give a folder")
    assert list(tmp_path.iterdir()) == [two_runs[1].parent]


def test_two_checkpoints_that_would_share_a_file_are_refused(cli, digits_run, tmp_path):
    copy = tmp_path / "a" / digits_run.parent.name
    copy.mkdir(parents=True)
    shutil.copy(digits_run, copy / "best.safetensors")
    outcome = cli("eval", digits_run, copy / "best.safetensors", "--no-plots", "--save-logits", tmp_path / "out")
    assert_one_error_line(outcome, 2, "would both write", f"{digits_run.parent.name}-best.logits.safetensors")
    assert not (tmp_path / "out").exists()


def test_the_metadata_is_plain_json_strings(cli, digits_run, tmp_path):
    """Readable without bagmar: safetensors' metadata is a str -> str map; the lists are JSON."""
    from safetensors import safe_open

    path = tmp_path / "raw.safetensors"
    assert cli("eval", digits_run, "--no-plots", "--save-logits", path).code == 0
    with safe_open(str(path), "pt") as handle:
        meta = handle.metadata()
    assert meta["format"] == "bagmar-logits" and meta["method"] == "none" and meta["tau"] == ""
    assert len(json.loads(meta["items"])) == load_logits(path).labels.numel()
    assert json.loads(meta["classes"]) == list(load_checkpoint(digits_run, tensors=False).meta.classes)
