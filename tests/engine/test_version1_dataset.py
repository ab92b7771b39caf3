"""A version-1 dataset directory (bagmar 0.1.0's manifest) still trains and evaluates."""

import shutil
from pathlib import Path

FIXTURE = Path(__file__).parents[1] / "data" / "fixtures" / "manifest_v1_digits.json"


def test_a_version_1_dataset_trains_and_evaluates(cli, digits_data: Path, tmp_path: Path):
    old = shutil.copytree(digits_data, tmp_path / "v1")
    shutil.copyfile(FIXTURE, old / "manifest.json")
    args = ("--epochs", "1", "--device", "cpu", "--set", "model.backbone=resnet8_cifar", "--out", tmp_path / "run")
    outcome = cli("train", "--data", old, "--preset", "digits_lt", *args)
    assert outcome.code == 0, outcome.err
    outcome = cli("eval", tmp_path / "run" / "best.safetensors", "--json", "--no-plots", "--device", "cpu")
    assert outcome.code == 0, outcome.err
    assert outcome.json()["n"] == 300 and 0.0 <= outcome.json()["top1"] <= 1.0
    assert (old / "manifest.json").read_bytes() == FIXTURE.read_bytes()
