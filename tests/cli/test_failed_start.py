"""A run that cannot start leaves nothing behind: a backbone that takes one input size only is refused before
anything is written, and any other failure before the first checkpoint removes what the run wrote."""

from __future__ import annotations

from pathlib import Path

from support.bad_input import assert_one_error_line
from support.training import raise_at_call, with_hooks

from bagmar_cli.errors import TrainingError


def _train(cli, data: Path, out: Path, *extra: str):
    return cli("train", "--data", data, "--out", out, "--epochs", "1", "--device", "cpu", *extra)


def test_a_fixed_size_backbone_on_images_of_another_size_is_refused_before_anything_is_written(
    cli, digits_data, tmp_path
):
    """timm's test_vit takes 160x160 images only; digits are 8x8: one line naming the setting, no run directory."""
    outcome = _train(cli, digits_data, tmp_path / "run", "--set", "model.backbone=test_vit")
    line = assert_one_error_line(outcome, 2, "model.backbone 'test_vit' takes 160x160 images only", "gives 8x8")
    assert "prepare the dataset at 160x160 pixels" in line and "model.backbone to one that takes any size" in line
    assert outcome.out == "" and list(tmp_path.iterdir()) == []


def test_a_run_that_fails_before_its_first_checkpoint_leaves_no_directory_and_the_command_works_again(
    cli, digits_data, tmp_path, monkeypatch
):
    with_hooks(monkeypatch, on_epoch_start=raise_at_call(1, TrainingError("the first step failed")))
    outcome = _train(cli, digits_data, tmp_path / "run", "--set", "model.backbone=resnet8_cifar")
    assert_one_error_line(outcome, 1, "the first step failed")
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    again = _train(cli, digits_data, tmp_path / "run", "--set", "model.backbone=resnet8_cifar")
    assert again.code == 0, again.err
    assert again.out.strip() == str(tmp_path / "run" / "best.safetensors")


def test_a_failed_start_in_a_directory_the_user_made_keeps_the_directory_but_not_the_runs_files(
    cli, digits_data, tmp_path, monkeypatch
):
    run = tmp_path / "run"
    run.mkdir()

    with_hooks(monkeypatch, on_epoch_start=raise_at_call(1, MemoryError))
    outcome = _train(cli, digits_data, run, "--set", "model.backbone=resnet8_cifar")
    assert outcome.code == 1 and "MemoryError" in outcome.err
    assert run.is_dir() and list(run.iterdir()) == []
