"""Shared fixtures: a CLI runner through the real entry point, and a small prepared digits dataset."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from bagmar_cli.cli import main

SHARED = Path(__file__).resolve().parents[2] / "shared"


@dataclass
class Outcome:
    code: int
    out: str
    err: str

    def json(self):
        return json.loads(self.out)


@pytest.fixture
def cli(capsys):
    """Run `bagmar ARGS` in-process through main(); returns exit code, stdout and stderr."""

    def run(*args: str) -> Outcome:
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return Outcome(code, captured.out, captured.err)

    return run


@pytest.fixture(scope="session")
def digits_data(tmp_path_factory) -> Path:
    """digits-LT (imb 10) with a 10-per-class val split, prepared once per session."""
    from bagmar_cli.data import prepare_dataset

    return prepare_dataset("digits", imb=10, val_per_class=10, out=tmp_path_factory.mktemp("data") / "digits")


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory, digits_data) -> Path:
    """A 2-epoch digits run (tiny ResNet-20 to stay fast); returns best.safetensors."""
    from bagmar_cli.engine.train.recipe import train
    from bagmar_cli.settings import load_settings

    settings = load_settings(
        "digits_lt",
        overrides=["model.backbone=resnet20_cifar"],
        flags={"data.root": digits_data, "train.epochs": 2, "train.device": "cpu"},
    )
    return train(settings, tmp_path_factory.mktemp("runs") / "run")
