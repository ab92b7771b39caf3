"""export -> predict through the real CLI: predictions on PNG files equal `bagmar eval`'s on the same images."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from bagmar_cli.checkpoint import update_metadata
from bagmar_cli.data import load_split
from bagmar_cli.engine.evaluate.evaluator import split_outputs
from bagmar_cli.functional.posthoc import logit_adjust
from bagmar_cli.functional.priors import class_prior

EXPORTS = {"onnx": "model.onnx", "torchscript": "model.torchscript.pt", "safetensors": "model.bundle.safetensors"}


@pytest.fixture(scope="module")
def test_pngs(digits_data: Path, tmp_path_factory) -> Path:
    """The digits test split as 8x8 grayscale PNGs (lossless), named in split order."""
    folder = tmp_path_factory.mktemp("pngs")
    images, _ = load_split(digits_data, "test")
    for i, image in enumerate(images):
        Image.fromarray(image[0].numpy()).save(folder / f"{i:04d}.png")
    return folder


@pytest.fixture(scope="module")
def eval_probs(digits_run: Path) -> torch.Tensor:
    """Softmax of the logits `bagmar eval` computes on the test split."""
    return torch.softmax(split_outputs(digits_run, data=None, split="test", device="cpu").logits, dim=1)


@pytest.fixture
def ckpt(digits_run: Path, tmp_path: Path) -> Path:
    """A copy of the fixture checkpoint, so exports beside it stay out of the shared run directory."""
    return Path(shutil.copy(digits_run, tmp_path / "model.safetensors"))


def predicted(outcome) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-1 indices and the full probability rows (in class order) from `predict --json --top-k 10`."""
    rows = [json.loads(line) for line in outcome.out.splitlines()]
    probs = torch.zeros(len(rows), 10)
    for row, entry in zip(probs, rows, strict=True):
        for top in entry["top_k"]:
            row[top["index"]] = top["score"]
    return torch.tensor([entry["top_k"][0]["index"] for entry in rows]), probs


@pytest.mark.parametrize("kind", ["checkpoint", *EXPORTS])
def test_predict_agrees_with_eval(cli, ckpt, test_pngs, eval_probs, kind):
    model = ckpt
    if kind != "checkpoint":
        exported = cli("export", ckpt, "--format", kind)
        assert exported.code == 0, exported.err
        assert exported.out == f"{ckpt.parent / EXPORTS[kind]}\n"  # the path, and nothing else
        model = Path(exported.out.strip())
    outcome = cli("predict", model, test_pngs, "--json", "--top-k", "10", "--batch-size", "64")
    assert outcome.code == 0, outcome.err
    top1, probs = predicted(outcome)
    assert len(top1) == len(eval_probs)
    assert torch.equal(top1, eval_probs.argmax(1))
    assert (probs - eval_probs).abs().max() < 1e-5


def test_predict_applies_the_recorded_posthoc(cli, ckpt, digits_run, test_pngs):
    record = {"method": "logit-adjust", "tau": 2.0, "c": None, "split": "val", "metric": "top1"}
    update_metadata(ckpt, {"posthoc": record})
    outputs = split_outputs(digits_run, data=None, split="test", device="cpu")
    adjusted = logit_adjust(outputs.logits, class_prior(torch.tensor(outputs.counts)), 2.0)
    onnx = cli("export", ckpt)
    assert onnx.code == 0, onnx.err
    for model in (ckpt, Path(onnx.out.strip())):
        top1, _ = predicted(cli("predict", model, test_pngs, "--json", "--top-k", "10"))
        assert torch.equal(top1, adjusted.argmax(1))
    assert not torch.equal(adjusted.argmax(1), outputs.logits.argmax(1))  # the adjustment changes predictions


def test_unreadable_image_gets_an_error_and_exit_1(cli, ckpt, test_pngs, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for name in ("0000.png", "0001.png", "0002.png"):
        shutil.copy(test_pngs / name, folder / name)
    (folder / "0001b.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    outcome = cli("predict", ckpt, folder, "--json")
    entries = [json.loads(line) for line in outcome.out.splitlines()]
    assert outcome.code == 1 and "Error:" in outcome.err and "0001b.png" in outcome.err
    assert [Path(e["path"]).name for e in entries] == ["0000.png", "0001.png", "0001b.png", "0002.png"]
    assert "error" in entries[2] and all("top_k" in e for e in entries[:2] + entries[3:])
    text = cli("predict", ckpt, folder)
    lines = text.out.splitlines()
    assert text.code == 1 and len(lines) == 4 and "error" in lines[2]
    first = entries[0]["top_k"][0]
    assert lines[0] == f"{folder / '0000.png'}  {first['class']} ({first['score']:.4f})"


def test_existing_export_is_not_overwritten(cli, ckpt):
    first = cli("export", ckpt, "--no-check")
    assert first.code == 0, first.err
    out = Path(first.out.strip())
    before = out.read_bytes()
    again = cli("export", ckpt, "--tau", "none", "--output", "probabilities")
    assert again.code == 2 and "--overwrite" in again.err and again.out == ""
    assert out.read_bytes() == before
    replaced = cli("export", ckpt, "--output", "probabilities", "--overwrite")
    assert replaced.code == 0 and out.read_bytes() != before
    assert json.loads(Path(f"{out}.json").read_text())["output"] == "probabilities"


def test_fixed_batch_export_predicts_any_number_of_images(cli, ckpt, test_pngs, eval_probs):
    exported = cli("export", ckpt, "--batch", "3", "--out", ckpt.parent / "b3.onnx")
    assert exported.code == 0, exported.err
    outcome = cli("predict", exported.out.strip(), *sorted(test_pngs.iterdir())[:7], "--json")
    top1, _ = predicted(outcome)
    assert torch.equal(top1, eval_probs[:7].argmax(1))


@pytest.mark.parametrize(
    "args",
    [
        ["export", "{ckpt}", "--format", "tflite"],
        ["export", "{ckpt}", "--batch", "0"],
        ["predict", "{ckpt}", "{empty}"],
        ["predict", "{ckpt}.onnx", "{ckpt}"],
    ],
)
def test_usage_errors(cli, ckpt, tmp_path, args):
    (tmp_path / "empty").mkdir()
    outcome = cli(*(a.format(ckpt=ckpt, empty=tmp_path / "empty") for a in args))
    assert outcome.code == 2 and outcome.err.startswith("Error:") and outcome.out == ""


@pytest.mark.parametrize("kind", ["checkpoint", *EXPORTS])
def test_predict_with_test_time_views_agrees_with_eval(cli, ckpt, test_pngs, digits_run, kind):
    """`predict --tta` on a checkpoint, and an export made with `--tta` (the views baked in), give eval's TTA
    probabilities; an export runs only the views it was made with."""
    logits = split_outputs(digits_run, data=None, split="test", device="cpu", tta="five_crop_flip").logits
    eval_probs = torch.softmax(logits, dim=1)
    model, extra = ckpt, ["--tta", "five_crop_flip"]
    if kind != "checkpoint":
        exported = cli("export", ckpt, "--format", kind, "--tta", "five_crop_flip")
        assert exported.code == 0, exported.err
        model, extra = Path(exported.out.strip()), []
        if kind != "safetensors":
            assert json.loads(Path(f"{model}.json").read_text())["tta"] == "five_crop_flip"
            refused = cli("predict", model, test_pngs, "--tta", "flip")
            assert refused.code == 2 and "--tta flip:" in refused.err and "fixed at export" in refused.err
    outcome = cli("predict", model, test_pngs, "--json", "--top-k", "10", *extra)
    assert outcome.code == 0, outcome.err
    _, probs = predicted(outcome)
    assert (probs - eval_probs).abs().max() < 1e-5
