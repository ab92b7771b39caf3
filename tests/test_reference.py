"""The generated references (docs/cli.md, docs/settings.md) match the code, and `bagmar presets NAME` explains."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from bagmar_cli.reference import explained_toml, render, setting_docs
from bagmar_cli.settings import load_settings, preset_names

DOCS = Path(__file__).resolve().parents[1] / "docs"


@pytest.mark.parametrize("name", ["cli.md", "settings.md"])
def test_committed_reference_is_what_the_code_generates(name: str):
    committed = (DOCS / name).read_text(encoding="utf-8")
    assert committed == render()[name], f"docs/{name} is out of date: run `make docs`"


def test_every_setting_has_a_description():
    assert [doc.key for doc in setting_docs() if not doc.description] == []


def test_cli_reference_lists_every_option_with_its_aliases():
    text = render()["cli.md"]
    for fragment in ("## bagmar eval", "`--device <str>`", "`--batch-size <int range>`", "`-o, --out <path>`"):
        assert fragment in text
    assert "| `-f, --format <onnx\\|torchscript\\|safetensors>` |" in text


@pytest.mark.parametrize("name", preset_names())
def test_explained_preset_is_toml_that_loads_back_to_the_same_settings(name: str, tmp_path: Path):
    settings = load_settings(preset=name)
    text = explained_toml(settings)
    path = tmp_path / "explained.toml"
    path.write_text(text, encoding="utf-8")
    tomllib.loads(text)
    assert load_settings(config=path) == settings


def test_presets_name_explains_each_value_and_lists_unset_settings(cli):
    shown = cli("presets", "fashion_mnist_lt")
    assert shown.code == 0
    lines = shown.out.splitlines()
    assert 'backbone = "resnet8_s2_cifar"  # any timm model name, or our registered CIFAR ResNets' in lines
    unset = "# weights: unset (path): backbone weights from a local safetensors file"
    assert any(line.startswith(unset) for line in lines)
