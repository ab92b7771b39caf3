"""Exports of fine-tuned checkpoints: LoRA is merged (no peft module in the graph) and the ONNX file computes what
`bagmar eval` computes, to 1e-5; AdaptFormer exports as its own small module; test-time views are baked in."""

from __future__ import annotations

from pathlib import Path

import onnx
import onnxruntime as ort
import pytest
import torch
from support.finetuned import finetuned_run, folder_dataset

from bagmar_cli.checkpoint import load_checkpoint
from bagmar_cli.data.splits import open_eval_split
from bagmar_cli.engine.evaluate.evaluator import split_outputs
from bagmar_cli.engine.evaluate.inference import first_images
from bagmar_cli.engine.evaluate.tta import tta_plan, tta_preprocess
from bagmar_cli.engine.restore import model_from_checkpoint
from bagmar_cli.engine.serve.export import ExportOptions, export_model
from bagmar_cli.engine.serve.export.sidecar import read_sidecar


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return folder_dataset(tmp_path_factory.mktemp("ft"))


@pytest.fixture(scope="module")
def runs(data, tmp_path_factory) -> dict[str, Path]:
    """peft -> best.safetensors of one epoch of test_vit."""
    work = tmp_path_factory.mktemp("runs")
    return {peft: finetuned_run(data, work / peft, peft) for peft in ("lora", "adaptformer")}


def onnx_logits(path: Path, images: torch.Tensor) -> torch.Tensor:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {"images": images.numpy()})[0])


def test_split_images(ckpt: Path, split: str, mode: str = "none") -> torch.Tensor:
    """The split's images read as eval reads them (under the test-time views `mode`)."""
    meta = load_checkpoint(ckpt).meta
    spec = meta.model
    preprocess = tta_preprocess(spec.preprocess, tta_plan(mode, spec))
    opened = open_eval_split(Path(meta.settings.data.root or ""), split, preprocess, spec.mean, spec.std)
    return first_images(opened, 100)


test_split_images.__test__ = False  # a helper, not a test


@pytest.mark.parametrize("peft", ["lora", "adaptformer"])
def test_an_onnx_export_agrees_with_eval_to_1e_5(runs, tmp_path, peft):
    ckpt = runs[peft]
    out = export_model(ExportOptions(ckpt, "onnx", tau="none", out=tmp_path / "m.onnx", output="logits"))
    graph = onnx.load(str(out))
    names = [node.name for node in graph.graph.node] + [init.name for init in graph.graph.initializer]
    assert not any("lora" in name.lower() for name in names), "LoRA is merged: nothing of peft in the graph"
    assert any("adaptformer" in name for name in names) == (peft == "adaptformer")
    evaluated = split_outputs(ckpt, data=None, split="test", device="cpu", tta="none")
    exported = onnx_logits(out, test_split_images(ckpt, "test"))
    assert len(exported) == len(evaluated.logits) == 6
    torch.testing.assert_close(exported, evaluated.logits, atol=1e-5, rtol=0)
    assert read_sidecar(out).tta == "none"


def test_lora_is_merged_into_plain_linears_in_a_torchscript_export(runs, tmp_path):
    """The traced module keeps its submodules' names: the checkpoint's model has LoRA layers, the export none."""
    ckpt = runs["lora"]
    assert any("lora_" in name for name in model_from_checkpoint(load_checkpoint(ckpt)).state_dict())
    out = export_model(ExportOptions(ckpt, "torchscript", tau="none", out=tmp_path / "m.pt", output="logits"))
    traced = torch.jit.load(str(out))
    names = [name for name, _ in traced.named_modules()] + list(traced.state_dict())
    assert names and not any("lora" in name or "base_layer" in name for name in names)
    evaluated = split_outputs(ckpt, data=None, split="test", device="cpu", tta="none")
    with torch.no_grad():
        torch.testing.assert_close(traced(test_split_images(ckpt, "test")), evaluated.logits, atol=1e-5, rtol=0)


def test_an_export_bakes_the_test_time_views_in(runs, tmp_path):
    """five_crop_flip: the export reads images at LIFT's side (round(160 * 248 / 224) = 177) and gives eval's
    TTA logits."""
    ckpt = runs["lora"]
    out = tmp_path / "m.onnx"
    export_model(ExportOptions(ckpt, "onnx", tau="none", out=out, output="logits", tta="five_crop_flip"))
    sidecar = read_sidecar(out)
    assert sidecar.tta == "five_crop_flip" and sidecar.input_size == [3, 177, 177]
    assert sidecar.preprocess is not None and (sidecar.preprocess.resize, sidecar.preprocess.crop) == (177, 177)
    evaluated = split_outputs(ckpt, data=None, split="test", device="cpu", tta="five_crop_flip")
    exported = onnx_logits(out, test_split_images(ckpt, "test", "five_crop_flip"))
    torch.testing.assert_close(exported, evaluated.logits, atol=1e-5, rtol=0)
