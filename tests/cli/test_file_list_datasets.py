"""Image-file datasets end to end: prepare -> train -> tune-tau -> eval -> export -> predict, through the real CLI.

Two generated trees: a user's folders (`ROOT/{train,val,test}/<class>/*.jpg`) and an ImageNet-LT-format tree (the
official list names, `train/<wnid>/...JPEG`, `val/<wnid>/ILSVRC2012_val_*.JPEG`). A tiny CIFAR ResNet at a 32-pixel
crop keeps each run at a few seconds. Bad list lines, paths escaping --root, empty classes and symlink loops are
refused by `prepare` (tests/data/test_prepare_files.py); here: images that break after preparing.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from support.bad_input import assert_one_error_line, snapshot
from support.image_trees import write_jpeg

from bagmar_cli.checkpoint import load_checkpoint
from bagmar_cli.data.sources.benchmarks import get_benchmark
from bagmar_cli.engine.evaluate.saved_logits import load_logits

TINY = ["--preset", "digits_lt", "--set", "model.backbone=resnet8_cifar", "--set", "data.crop=32", "--device", "cpu"]


@pytest.fixture(scope="module")
def folder_tree(tmp_path_factory) -> Path:
    """ROOT/{train,val,test}/<class>/*.jpg: 4 classes, 12 to 3 training images, 3 val and 3 test per class."""
    root = tmp_path_factory.mktemp("tree")
    for c, n in enumerate((12, 8, 5, 3)):
        for split, count in (("train", n), ("val", 3), ("test", 3)):
            for i in range(count):
                write_jpeg(root / split / f"class{c}" / f"{i}.jpg", seed=c)
    return root


@pytest.fixture(scope="module")
def folder_run(folder_tree, tmp_path_factory, cli_module):
    """The tree prepared and trained for one epoch; returns (dataset dir, run dir)."""
    work = tmp_path_factory.mktemp("folder")
    assert cli_module("prepare", "folder", "--root", folder_tree, "--out", work / "ds").code == 0
    outcome = cli_module(
        "train", "--data", work / "ds", *TINY, "--epochs", "1", "--batch-size", "8", "--out", work / "run"
    )
    assert outcome.code == 0, outcome.err
    return work / "ds", work / "run"


@pytest.fixture(scope="module")
def cli_module():
    """The `cli` fixture for module-scoped fixtures (stdout and stderr captured by redirection)."""
    import contextlib
    import io

    from bagmar_cli.cli import main
    from tests.conftest import Outcome

    def run(*args) -> Outcome:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([str(a) for a in args])
        return Outcome(code, out.getvalue(), err.getvalue())

    return run


def _list(ds: Path, split: str) -> list[tuple[str, int]]:
    lines = (ds / f"{split}.txt").read_text().splitlines()
    return [(line.rsplit(" ", 1)[0], int(line.rsplit(" ", 1)[1])) for line in lines]


def test_training_on_image_files_records_the_preprocessing_and_validates_every_image(folder_run):
    _, run = folder_run
    record = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["undecodable"] == 0 and record["val"]["n"] == 12  # the whole val split, nothing skipped
    spec = load_checkpoint(run / "best.safetensors", tensors=False).meta.model
    assert spec.input_size == [3, 32, 32]
    # 48x40 JPEGs are small images: evaluated whole (resize = crop), as their pad-and-crop trains on them
    assert spec.preprocess is not None and (spec.preprocess.resize, spec.preprocess.crop) == (32, 32)


def test_predict_on_the_jpegs_gives_what_eval_gives_for_them(cli, folder_run, folder_tree, tmp_path):
    """eval's per-image logits (--save-logits) and predict's scores on the same JPEGs: the same preprocessing."""
    ds, run = folder_run
    ckpt = Path(shutil.copy(run / "best.safetensors", tmp_path / "model.safetensors"))
    outcome = cli("eval", ckpt, "--split", "test", "--save-logits", tmp_path / "logits.safetensors", "--device", "cpu")
    assert outcome.code == 0, outcome.err
    eval_probs = torch.softmax(load_file(tmp_path / "logits.safetensors")["logits"], dim=1)
    outcome = cli("predict", ckpt, folder_tree / "test", "--json", "--top-k", "4", "--device", "cpu")
    assert outcome.code == 0, outcome.err
    predicted = {
        Path(e["path"]).relative_to(folder_tree).as_posix(): e["top_k"]
        for e in map(json.loads, outcome.out.splitlines())
    }
    listed = _list(ds, "test")
    assert sorted(predicted) == sorted(path for path, _ in listed)
    for row, (path, _) in enumerate(listed):
        scores = torch.zeros(4)
        for top in predicted[path]:
            scores[top["index"]] = top["score"]
        assert torch.allclose(scores, eval_probs[row], atol=1e-5), path
        assert predicted[path][0]["index"] == int(eval_probs[row].argmax())
    saved = load_logits(tmp_path / "logits.safetensors")  # rows named by their image files, in list order
    assert [Path(item).relative_to(folder_tree).as_posix() for item in saved.items] == [path for path, _ in listed]


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_tune_tau_export_and_predict_on_a_folder_dataset(cli, folder_run, folder_tree, tmp_path, fmt):
    _, run = folder_run
    ckpt = Path(shutil.copy(run / "best.safetensors", tmp_path / "model.safetensors"))
    outcome = cli("tune-tau", ckpt, "--method", "logit-adjust", "--grid", "0:1:0.5", "--json", "--device", "cpu")
    assert outcome.code == 0, outcome.err
    assert outcome.json()["split"] == "val"
    outcome = cli("export", ckpt, "--format", fmt, "--out", tmp_path / f"model.{fmt}")
    assert outcome.code == 0, outcome.err
    sidecar = json.loads((tmp_path / f"model.{fmt}.json").read_text())
    assert sidecar["check"]["inputs"] == "val" and sidecar["check"]["n"] == 12
    assert sidecar["preprocess"]["crop"] == 32 and sidecar["preprocess"]["resize"] == 32
    from_export = cli("predict", tmp_path / f"model.{fmt}", folder_tree / "test", "--json", "--device", "cpu")
    from_ckpt = cli("predict", ckpt, folder_tree / "test", "--json", "--device", "cpu")
    assert from_export.code == from_ckpt.code == 0, from_export.err + from_ckpt.err
    a, b = ([json.loads(line)["top_k"][0] for line in o.out.splitlines()] for o in (from_export, from_ckpt))
    assert [t["index"] for t in a] == [t["index"] for t in b]
    assert np.allclose([t["score"] for t in a], [t["score"] for t in b], atol=1e-4)


def test_an_undecodable_training_image_is_skipped_counted_and_named(cli, folder_tree, tmp_path):
    tree = shutil.copytree(folder_tree, tmp_path / "tree")
    bad = tree / "train" / "class0" / "0.jpg"
    bad.write_bytes(b"not a jpeg")
    assert cli("prepare", "folder", "--root", tree, "--out", tmp_path / "ds").code == 0
    args = ("train", "--data", tmp_path / "ds", *TINY, "--epochs", "1", "--batch-size", "8")
    outcome = cli(*args, "--out", tmp_path / "run", "--set", "data.max_bad_fraction=0.05")
    assert outcome.code == 0, outcome.err
    assert str(bad) in outcome.err and "does not decode" in outcome.err
    assert json.loads((tmp_path / "run" / "metrics.jsonl").read_text())["undecodable"] == 1
    before = snapshot(tree)
    outcome = cli(*args, "--out", tmp_path / "strict", "--set", "data.max_bad_fraction=0")
    assert_one_error_line(outcome, 1, "failed to decode", "data.max_bad_fraction", str(bad))
    assert snapshot(tree) == before and not (tmp_path / "strict" / "last.safetensors").exists()


def test_evaluation_names_an_undecodable_or_missing_image_instead_of_shrinking_the_split(cli, folder_run, tmp_path):
    ds, run = folder_run
    ckpt = Path(shutil.copy(run / "best.safetensors", tmp_path / "model.safetensors"))
    tree = shutil.copytree(json.loads((ds / "manifest.json").read_text())["image_root"], tmp_path / "tree")
    moved = shutil.copytree(ds, tmp_path / "ds")
    manifest = json.loads((moved / "manifest.json").read_text())
    (moved / "manifest.json").write_text(json.dumps(manifest | {"image_root": str(tree)}))
    (tree / "test" / "class1" / "2.jpg").write_bytes(b"\xff\xd8 truncated")
    (tree / "test" / "class2" / "0.jpg").unlink()
    before = ckpt.read_bytes()
    outcome = cli("eval", ckpt, "--data", moved, "--split", "test", "--device", "cpu")
    assert_one_error_line(
        outcome, 1, "cannot decode", str(tree / "test" / "class1" / "2.jpg"), "evaluation reads every image"
    )
    assert ckpt.read_bytes() == before


def test_a_list_changed_after_prepare_is_refused(cli, folder_run, tmp_path):
    ds, run = folder_run
    moved = shutil.copytree(ds, tmp_path / "ds")
    with (moved / "val.txt").open("a") as f:
        f.write("val/class0/0.jpg 1\n")
    outcome = cli("eval", run / "best.safetensors", "--data", moved, "--split", "val", "--device", "cpu")
    assert_one_error_line(outcome, 1, "val.txt differs from the list this dataset was prepared with")


def test_a_tensor_model_on_a_file_list_dataset_is_one_clear_error(cli, digits_run, tmp_path):
    root = tmp_path / "tree"
    for c in range(10):
        write_jpeg(root / "train" / f"c{c}" / "0.jpg", c)
        write_jpeg(root / "test" / f"c{c}" / "0.jpg", c)
    assert cli("prepare", "folder", "--root", root, "--out", tmp_path / "ds").code == 0
    before = digits_run.read_bytes()
    for command in ("eval", "tune-tau"):
        outcome = cli(command, digits_run, "--data", tmp_path / "ds", "--split", "test", "--device", "cpu")
        assert_one_error_line(outcome, 2, "is a list of image files, but the model records no image preprocessing")
    assert digits_run.read_bytes() == before


def test_train_without_a_preset_runs_the_folder_recipe(cli, folder_run, tmp_path, monkeypatch):
    """The folder's recipe is `finetune` (tests/cli/test_finetune_default.py): offline, without weights, one line;
    a manifest naming a preset this bagmar does not ship is one line too (same file)."""
    ds, _ = folder_run
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    outcome = cli("train", "--data", ds, "--epochs", "1", "--device", "cpu", "--out", tmp_path / "r")
    assert_one_error_line(outcome, 1, "'vit_base_patch16_clip_224.openai'", "set model.weights = FILE")
    assert not (tmp_path / "r").exists()


@pytest.fixture(scope="module")
def imagenet_tree(tmp_path_factory) -> tuple[Path, Path]:
    """An ImageNet-LT-format tree: official list names, every class in train (1 or 2 images), 40 val and test images."""
    bench = get_benchmark("imagenet_lt")
    root, splits = tmp_path_factory.mktemp("imagenet"), tmp_path_factory.mktemp("splits")
    lines: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for c in range(bench.num_classes):
        wnid = f"n{c:08d}"
        for i in range(2 if c < 100 else 1):
            lines["train"].append(f"train/{wnid}/{wnid}_{i}.JPEG {c}")
        if c % 25 == 0:
            lines["val"].append(f"train/{wnid}/{wnid}_val.JPEG {c}")
            lines["test"].append(f"val/{wnid}/ILSVRC2012_val_{c:08d}.JPEG {c}")
    for split, file in bench.lists.items():
        (splits / file).write_text("".join(f"{line}\n" for line in lines[split]))
        for line in lines[split]:
            write_jpeg(root / line.rsplit(" ", 1)[0], seed=int(line.rsplit(" ", 1)[1]) % 7, size=(20, 16))
    return root, splits


def test_imagenet_lt_format_from_prepare_to_predict(cli, imagenet_tree, tmp_path):
    root, splits = imagenet_tree
    before = snapshot(root, splits)
    ds, run = tmp_path / "ds", tmp_path / "run"
    assert cli("prepare", "imagenet_lt", "--root", root, "--splits", splits, "--out", ds).code == 0
    outcome = cli("train", "--data", ds, *TINY, "--epochs", "1", "--batch-size", "128", "--out", run)
    assert outcome.code == 0, outcome.err
    assert json.loads((run / "metrics.jsonl").read_text())["val"]["n"] == 40
    ckpt = run / "best.safetensors"
    outcome = cli("tune-tau", ckpt, "--method", "pn", "--grid", "0:1:0.5", "--json", "--device", "cpu")
    assert outcome.code == 0 and outcome.json()["split"] == "val", outcome.err
    outcome = cli(
        "eval", ckpt, "--json", "--save-logits", tmp_path / "logits.safetensors", "--no-plots", "--device", "cpu"
    )
    assert outcome.code == 0, outcome.err
    assert outcome.json()["split"] == "test" and outcome.json()["n"] == 40
    assert cli("export", ckpt, "--format", "torchscript", "--out", tmp_path / "m.pt").code == 0
    outcome = cli("predict", tmp_path / "m.pt", root / "val", "--json", "--device", "cpu")
    assert outcome.code == 0, outcome.err
    entries = [json.loads(line) for line in outcome.out.splitlines()]
    assert len(entries) == 40 and all(Path(e["path"]).name.startswith("ILSVRC2012_val_") for e in entries)
    assert snapshot(root, splits) == before  # nothing under --root or --splits was touched


@pytest.fixture(scope="module")
def full_size_export(tmp_path_factory, cli_module) -> Path:
    """A tree of 120x90 images (not small: the large-image defaults, shorter side resized to 256 then a 224 center
    crop), trained for an epoch and exported to ONNX."""
    tree, work = tmp_path_factory.mktemp("tree-120"), tmp_path_factory.mktemp("full-size")
    for c, n in enumerate((6, 4, 3, 2)):
        for split, count in (("train", n), ("val", 2), ("test", 2)):
            for i in range(count):
                write_jpeg(tree / split / f"class{c}" / f"{i}.jpg", seed=c, size=(120, 90))
    assert cli_module("prepare", "folder", "--root", tree, "--out", work / "ds").code == 0
    full_size = ["--preset", "digits_lt", "--set", "model.backbone=resnet8_cifar", "--device", "cpu"]
    outcome = cli_module(
        "train", "--data", work / "ds", *full_size, "--epochs", "1", "--batch-size", "8", "--out", work / "run"
    )
    assert outcome.code == 0, outcome.err
    outcome = cli_module("export", work / "run" / "best.safetensors", "--out", work / "model.onnx")
    assert outcome.code == 0, outcome.err
    return work / "model.onnx"


def test_serving_snippet_resizes_and_crops_like_predict(cli, full_size_export, tmp_path):
    """docs/export.md's serve.py on a 256-resize, 224-crop model: predict's class and score for every image."""
    import subprocess
    import sys

    from PIL import Image
    from support.snippets import serving_snippet

    sidecar = json.loads(Path(f"{full_size_export}.json").read_text())
    assert (sidecar["preprocess"]["resize"], sidecar["preprocess"]["crop"]) == (256, 224)
    images = []
    for i, (w, h) in enumerate([(400, 240), (240, 400), (300, 300), (512, 260)]):
        x, y = np.meshgrid(np.linspace(0, 1, w), np.linspace(0, 1, h))  # structure that a stretch would move
        pixels = np.stack([x * 255, y * 255, ((x * (i + 2) + y) % 1) * 255], axis=-1).astype(np.uint8)
        pixels[:, : w // 6] = (0, 0, 255) if i % 2 else (255, 0, 0)  # a border that the center crop cuts away
        images.append(tmp_path / f"{i}.png")
        Image.fromarray(pixels).save(images[-1])
    done = subprocess.run(
        [sys.executable, serving_snippet(tmp_path), full_size_export, *images],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    predicted = cli("predict", full_size_export, *images, "--device", "cpu")
    assert predicted.code == 0, predicted.err
    served = [line.split() for line in done.stdout.splitlines()]
    expected = [line.split() for line in predicted.out.splitlines()]
    assert [row[:2] for row in served] == [row[:2] for row in expected]
    assert np.allclose([float(row[2]) for row in served], [float(row[-1].strip("()")) for row in expected], atol=1e-3)
