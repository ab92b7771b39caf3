"""engine/serve/export/formats.py: each format writes a file that reads back as the serving module it came from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from bagmar_cli.checkpoint import load_checkpoint
from bagmar_cli.choices import ExportFormat
from bagmar_cli.engine.serve.export.formats import OPSET, format_of
from bagmar_cli.engine.serve.export.serving import posthoc_record, serving_from_checkpoint
from bagmar_cli.errors import SettingError


@pytest.mark.parametrize(
    ("fmt", "batch"), [("onnx", 3), ("onnx", "dynamic"), ("torchscript", "dynamic"), ("safetensors", "dynamic")]
)
def test_written_exports_read_back_as_the_serving_module(
    tmp_path: Path, digits_run: Path, fmt: str, batch: Any
) -> None:
    ckpt = load_checkpoint(digits_run)
    serving = serving_from_checkpoint(ckpt).eval()
    input_size = ckpt.meta.model.input_size
    sidecar = {"batch": batch, "input_size": input_size, "posthoc": posthoc_record(None), "output": serving.output}
    form = format_of(fmt)
    path = tmp_path / f"model{form.suffix}"
    form.write(path, serving, ckpt, sidecar)
    images = torch.randn(3, *input_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = serving(images)
    got = form.load(path, torch.device("cpu"))(images)
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, atol=1e-4, rtol=1e-4)


def test_format_table() -> None:
    assert format_of("onnx").opset == OPSET and format_of(ExportFormat.TORCHSCRIPT).opset is None
    assert format_of("safetensors").suffix == ".bundle.safetensors" and not format_of("safetensors").fixed_batch
    with pytest.raises(SettingError):
        format_of("tflite")
