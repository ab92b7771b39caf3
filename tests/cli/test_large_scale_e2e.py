"""The large-scale presets end to end, one run per benchmark through the real CLI: prepare -> train (both stages of
the preset) -> tune-tau -> eval -> export -> predict, on generated JPEG trees in each benchmark's official list
format. The default suite swaps in a tiny timm backbone (test_resnet, 16-pixel crop) on the same code path; the
slow suite runs the presets' own backbones at a small crop (3, 7 and 2 minutes for ImageNet-LT, iNaturalist and
Places-LT on two shared CPU cores: every class needs a training image, so an epoch is at least 1,000, 8,142 and
365 images). Places-LT starts from a local weights file (the hub is offline here), which is deleted after
training: a rebuilt checkpoint never reads it again.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file
from support.image_trees import benchmark_jpeg_tree

from bagmar_cli.checkpoint import load_checkpoint
from bagmar_cli.settings import load_settings


@dataclass(frozen=True)
class Case:
    preset: str
    train_per_class: tuple[int, ...]  # training images of class c: train_per_class[c % len]
    eval_split: str  # the split results are reported on
    batch: int  # the tiny runs' global batch (a few steps per epoch)
    frozen_prefixes: tuple[str, ...] = ()  # stage 1's frozen backbone tensors (all_but_last_stage): none here


CASES = {
    "imagenet_lt": Case("imagenet_lt", (2, 1), "test", 256),
    "inat2018": Case("inat2018", (1,), "val", 512),
    "places_lt": Case("places_lt", (2, 1), "test", 128),
}
REAL = {
    "imagenet_lt": ("resnext50_32x4d", 64, 128),
    "inat2018": ("resnet50", 32, 256),
    "places_lt": ("resnet152", 64, 64),
}
TINY = "test_resnet"  # timm's 0.4 M-parameter ResNet, with stages (feature_info) like the real ones


@pytest.fixture(scope="module")
def trees(tmp_path_factory) -> dict[str, tuple[Path, Path, dict[str, list[tuple[str, int]]]]]:
    """name -> (image root, --splits folder, the listed images per split), generated once per module."""
    out = {}
    for name, case in CASES.items():
        work = tmp_path_factory.mktemp(name)
        listed = benchmark_jpeg_tree(name, work / "root", work / "splits", train_per_class=case.train_per_class)
        out[name] = (work / "root", work / "splits", listed)
    return out


@pytest.mark.slow  # the default suite runs ImageNet-LT's format end to end in test_file_list_datasets.py
@pytest.mark.parametrize("name", sorted(CASES))
def test_each_benchmark_from_prepare_to_predict_through_both_stages(cli, trees, tmp_path, name):
    run_pipeline(cli, trees[name], tmp_path, CASES[name], backbone=TINY, crop=16, batch=CASES[name].batch)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CASES))
def test_each_benchmark_with_the_presets_real_backbone(cli, trees, tmp_path, name):
    backbone, crop, batch = REAL[name]
    run_pipeline(cli, trees[name], tmp_path, CASES[name], backbone=backbone, crop=crop, batch=batch)


def run_pipeline(cli, tree, tmp_path: Path, case: Case, *, backbone: str, crop: int, batch: int) -> None:
    root, splits, listed = tree
    ds, run = tmp_path / "ds", tmp_path / "run"
    outcome = cli("prepare", case.preset, "--root", root, "--splits", splits, "--out", ds)
    assert outcome.code == 0 and outcome.out.strip() == str(ds), outcome.err

    sets = [f"model.backbone={backbone}", f"data.crop={crop}", f"train.batch_size={batch}", "train.epochs=1"]
    sets += ["stage2.train.epochs=1", "data.num_workers=0"]
    weights = None
    if load_settings(case.preset).model.pretrained:  # Places-LT: the hub is offline here, so a local file
        weights = tmp_path / "imagenet_weights.safetensors"
        torch.manual_seed(0)
        save_file(timm.create_model(backbone, num_classes=0).state_dict(), weights)
        sets += ["model.pretrained=false", f"model.weights='{weights}'"]
    args = [arg for item in sets for arg in ("--set", item)]
    # no --preset: the manifest's default preset (imagenet_lt, inat2018, places_lt) is what trains
    outcome = cli("train", "--data", ds, *args, "--device", "cpu", "--out", run)
    assert outcome.code == 0, outcome.err
    ckpt = run / "stage2" / "best.safetensors"
    assert outcome.out.splitlines() == [str(ckpt)]
    check_stages(run, case, weights)
    if weights is not None:
        weights.unlink()  # the checkpoints hold the weights: nothing below may read the file

    outcome = cli("tune-tau", ckpt, "--method", "pn", "--grid", "0:2:0.5", "--json", "--device", "cpu")
    assert outcome.code == 0 and outcome.json()["split"] == "val", outcome.err
    # no --split: eval reports the dataset's reported split (iNaturalist's val, the others' test)
    outcome = cli("eval", ckpt, "--tau", "auto", "--json", "--no-plots", "--device", "cpu")
    assert outcome.code == 0, outcome.err
    report = outcome.json()
    assert (report["split"], report["n"]) == (case.eval_split, len(listed[case.eval_split]))
    assert report["posthoc"] is not None
    # iNaturalist has no test split: val is where the epoch was selected, tau tuned and results reported
    flags = (report["selected_on_reported_split"], report["tuned_on_reported_split"])
    assert flags == ((True, True) if case.eval_split == "val" else (False, False))

    export = tmp_path / "model.onnx"
    outcome = cli("export", ckpt, "--format", "onnx", "--out", export)
    assert outcome.code == 0 and export.is_file(), outcome.err
    images = [root / path for path, _ in listed[case.eval_split][:8]]
    from_export = cli("predict", export, *images, "--json", "--device", "cpu")
    from_ckpt = cli("predict", ckpt, *images, "--json", "--device", "cpu")
    assert from_export.code == from_ckpt.code == 0, from_export.err + from_ckpt.err
    a, b = ([json.loads(line) for line in o.out.splitlines()] for o in (from_export, from_ckpt))
    assert [Path(e["path"]) for e in a] == images
    assert [e["top_k"][0]["index"] for e in a] == [e["top_k"][0]["index"] for e in b]


def check_stages(run: Path, case: Case, weights: Path | None) -> None:
    """Both stages' runs are kept; stage 2 re-trained the classifier only, on stage 1's best backbone."""
    first, second = (
        load_checkpoint(run / "stage1" / "best.safetensors"),
        load_checkpoint(run / "stage2" / "best.safetensors"),
    )
    for stage in ("stage1", "stage2"):
        assert (run / stage / "last.safetensors").is_file() and (run / stage / "metrics.jsonl").is_file()
    recorded = tomllib.loads((run / "stage1" / "config.toml").read_text())
    assert recorded["description"] == load_settings(case.preset).description  # the default preset trained
    settings = second.meta.settings
    assert (settings.loss.name, settings.model.freeze, settings.data.sampler) == ("bagmar", "backbone", "class_aware")
    start, after = first.section("model.backbone"), second.section("model.backbone")
    assert after.keys() == start.keys() and all(torch.equal(after[k], start[k]) for k in start)  # BN statistics too
    if weights is not None:  # stage 1 fine-tuned only the last stage of the loaded weights
        from safetensors.torch import load_file

        loaded = load_file(weights)
        frozen = [k for k in loaded if not k.startswith("layer4.")]
        assert frozen and all(torch.equal(start[k], loaded[k]) for k in frozen)
        assert not torch.equal(start["layer4.0.conv1.weight"], loaded["layer4.0.conv1.weight"])
