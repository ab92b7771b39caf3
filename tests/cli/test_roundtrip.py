"""prepare -> train -> eval through the real CLI on digits, as a shell script would chain them."""

import json
from pathlib import Path

import pytest

from bagmar_cli.checkpoint import load_checkpoint


def test_prepare_train_eval(cli, tmp_path: Path):
    prepared = cli("prepare", "digits", "--imb", "10", "--val-per-class", "10", "--out", tmp_path / "d")
    assert prepared.code == 0, prepared.err
    data = Path(prepared.out.strip())
    assert prepared.out.count("\n") == 1 and (data / "manifest.json").is_file()

    trained = cli(
        "train",
        "--data",
        data,
        "--out",
        tmp_path / "run",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--set",
        "model.backbone=resnet20_cifar",
    )
    assert trained.code == 0, trained.err
    ckpt = Path(trained.out.strip())
    assert trained.out.count("\n") == 1 and ckpt.is_file()
    run = tmp_path / "run"
    assert (run / "config.toml").is_file() and (run / "last.safetensors").is_file()
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["epoch"] == 1

    evaluated = cli("eval", ckpt, "--json")
    assert evaluated.code == 0, evaluated.err
    report = evaluated.json()
    assert set(report) >= {"top1", "top5", "many", "medium", "few", "macro", "per_class", "split", "n"}
    assert (
        report["split"] == "test"
        and report["n"] == json.loads((data / "manifest.json").read_text())["splits"]["test"]["n"]
    )
    assert 0.0 <= report["top1"] <= 1.0 and len(report["per_class"]) == 10
    assert "top-1" in evaluated.err  # the table goes to stderr


def test_checkpoint_metadata_describes_the_run(digits_run: Path, digits_data: Path):
    meta = load_checkpoint(digits_run, tensors=False).meta
    manifest = json.loads((digits_data / "manifest.json").read_text())
    assert meta.classes == manifest["classes"]
    assert meta.train_counts == manifest["splits"]["train"]["counts"]
    assert meta.settings.loss.name == "bagmar"
    assert meta.selection_split == "val"
    assert meta.dataset.root == str(digits_data.resolve())
    assert meta.model.num_classes == 10 and meta.model.input_size == [1, 8, 8]


def test_bagmar_statistics_are_in_the_checkpoint(digits_run: Path):
    ckpt = load_checkpoint(digits_run)
    theta = ckpt.section("loss")["theta"]
    assert theta.shape == (10,) and theta.sum() > 0


def test_run_directory_of_another_run_is_refused(cli, digits_data: Path, digits_run: Path):
    run = digits_run.parent
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    again = cli("train", "--data", digits_data, "--out", run, "--epochs", "1")
    assert again.code == 2 and again.err.startswith("Error:") and "--resume" in again.err
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


def test_presets_lists_and_prints(cli):
    listed = cli("presets")
    assert listed.code == 0 and "cifar100_lt " in listed.out and "digits_lt" in listed.out
    shown = cli("presets", "cifar100_lt_imb50_ce")
    assert shown.code == 0 and 'name = "ce"' in shown.out and "imb = 50.0" in shown.out


@pytest.mark.parametrize(
    "args, code, fragment",
    [
        (["prepare", "imagenet"], 2, "unknown dataset 'imagenet'"),
        (["prepare", "digits", "--imb", "0.5"], 2, "data.imb"),
        (["prepare", "digits", "--imb", "nan"], 2, "data.imb"),
        (["train", "--preset", "nope"], 2, "unknown preset 'nope'"),
        (["train", "--set", "train.epochs"], 2, "expected section.key=value"),
        (["eval", "missing.safetensors"], 1, "not found"),
        (["frobnicate"], 2, "No such command"),
    ],
)
def test_errors_are_one_line(cli, args, code, fragment):
    outcome = cli(*args)
    assert outcome.code == code
    assert outcome.err.startswith("Error:") and fragment in outcome.err
    assert outcome.err.count("\n") == 1 and "Traceback" not in outcome.err and outcome.out == ""
