"""engine/serve/export/sidecar.py: the export sidecar's strict schema, as `read_sidecar` applies it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bagmar_cli.engine.serve.export.sidecar import read_sidecar, sidecar_of
from bagmar_cli.errors import BagmarError, SettingError


def _valid() -> dict[str, Any]:
    return {
        "format": "onnx",
        "file": "model.onnx",
        "bagmar_version": "0.1.0",
        "torch_version": "2.0",
        "opset": 17,
        "source_checkpoint": "/runs/best.safetensors",
        "source_checkpoint_sha256": "0" * 64,
        "input": "images",
        "output": "logits",
        "batch": 4,
        "classes": ["a", "b", "c"],
        "input_size": [1, 8, 8],
        "channels": "L",
        "resize": {"height": 8, "width": 8, "filter": "bilinear"},
        "mean": [0.5],
        "std": [0.25],
        "posthoc": None,
    }


def _write(tmp_path: Path, raw: dict[str, Any]) -> Path:
    export = tmp_path / "model.onnx"
    sidecar_of(export).write_text(json.dumps(raw), encoding="utf-8")
    return export


def test_a_valid_sidecar_reads_back_with_its_fixed_batch(tmp_path: Path) -> None:
    assert sidecar_of(tmp_path / "model.onnx") == tmp_path / "model.onnx.json"
    parsed = read_sidecar(_write(tmp_path, _valid()))
    assert parsed.classes == ["a", "b", "c"] and parsed.fixed_batch == 4
    assert read_sidecar(_write(tmp_path, _valid() | {"batch": "dynamic"})).fixed_batch is None


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"batch": 0}, "batch"),
        ({"unknown": 1}, "unknown"),
        ({"mean": [0.5, 0.5]}, "mean and std"),
        ({"classes": []}, "classes"),
        ({"resize": {"height": 8, "width": 8, "filter": "nearest"}}, "filter"),
    ],
)
def test_a_bad_field_is_refused_naming_the_file_and_field(tmp_path: Path, change: dict[str, Any], field: str) -> None:
    export = _write(tmp_path, _valid() | change)
    with pytest.raises(BagmarError, match="not a valid bagmar export sidecar") as info:
        read_sidecar(export)
    assert field in str(info.value) and "model.onnx.json" in str(info.value)


def test_a_missing_sidecar_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(SettingError, match=r"no sidecar model\.onnx\.json"):
        read_sidecar(tmp_path / "model.onnx")


def test_broken_json_and_a_bundle_sidecar_are_refused(tmp_path: Path) -> None:
    export = tmp_path / "model.onnx"
    sidecar_of(export).write_text("{not json", encoding="utf-8")
    with pytest.raises(BagmarError, match="cannot read"):
        read_sidecar(export)
    with pytest.raises(BagmarError, match="bundle is read directly"):
        read_sidecar(_write(tmp_path, _valid() | {"format": "safetensors"}))
