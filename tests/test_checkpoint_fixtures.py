"""Checkpoints written by bagmar 0.1.0 (tests/fixtures/checkpoints) still evaluate, tune, export and predict."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures" / "checkpoints"
TUNED = FIXTURES / "v1-tuned.safetensors"
BUNDLE = FIXTURES / "v1-bundle.bundle.safetensors"


@pytest.fixture
def tuned(tmp_path: Path) -> Path:
    """A private copy (tune-tau and export write beside it)."""
    return Path(shutil.copy(TUNED, tmp_path / "v1.safetensors"))


@pytest.mark.parametrize(("tau", "correct"), [("none", 35), ("auto", 64)])
def test_old_checkpoint_evaluates_to_its_recorded_accuracy(cli, digits_data: Path, tuned: Path, tau: str, correct: int):
    done = cli("eval", tuned, "--data", digits_data, "--tau", tau, "--no-plots", "--json", "--device", "cpu")
    assert done.code == 0, done.err
    report = done.json()
    assert report["top1"] == pytest.approx(correct / 300) and report["n"] == 300
    assert (report["posthoc"] or {}).get("method") == ("pn" if tau == "auto" else None)


def test_old_checkpoint_tunes(cli, digits_data: Path, tuned: Path):
    done = cli("tune-tau", tuned, "--data", digits_data, "--grid", "0:1:0.5", "--json", "--device", "cpu")
    assert done.code == 0, done.err
    assert done.json()["best"]["tau"] == 1.0 and done.json()["written"]
    again = cli("eval", tuned, "--data", digits_data, "--tau", "auto", "--no-plots", "--json", "--device", "cpu")
    assert again.code == 0 and again.json()["top1"] == pytest.approx(64 / 300)


@pytest.mark.parametrize("fmt", ["onnx", "torchscript", "safetensors"])
def test_old_checkpoint_exports(cli, digits_data: Path, tuned: Path, fmt: str):
    done = cli("export", tuned, "--data", digits_data, "--format", fmt)
    assert done.code == 0, done.err
    assert Path(done.out.strip()).is_file()


def test_old_bundle_predicts_as_its_checkpoint(cli, digits_data: Path, tuned: Path, tmp_path: Path):
    import numpy as np
    from PIL import Image

    from bagmar_cli.data import load_split

    images, _ = load_split(digits_data, "test")
    for i in range(5):
        Image.fromarray(images[i, 0].numpy().astype(np.uint8), mode="L").save(tmp_path / f"{i}.png")
    bundle = Path(shutil.copy(BUNDLE, tmp_path / "v1.bundle.safetensors"))
    from_bundle = cli("predict", bundle, tmp_path, "-k", "3", "--json")
    from_ckpt = cli("predict", tuned, tmp_path, "-k", "3", "--json")
    assert from_bundle.code == 0 and from_ckpt.code == 0, from_bundle.err + from_ckpt.err
    assert from_bundle.out == from_ckpt.out and from_bundle.out.count("\n") == 5
