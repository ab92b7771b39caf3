"""Datasets of image-file lists can be prepared; until training reads them, train, eval and tune-tau refuse them."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def ten_class_folder(tmp_path_factory) -> Path:
    """A prepared `folder` dataset of 10 classes (empty files: nothing here decodes them)."""
    from bagmar_cli.data import prepare_folder

    root = tmp_path_factory.mktemp("tree")
    for split, n in (("train", 3), ("test", 1)):
        for c in range(10):
            (root / split / f"class{c}").mkdir(parents=True)
            for i in range(n + (c == 0)):
                (root / split / f"class{c}" / f"{i}.jpg").touch()
    return prepare_folder(root=root, out=tmp_path_factory.mktemp("ds") / "folder")


def _one_error(outcome, fragment: str) -> None:
    assert outcome.code == 1, outcome.err
    lines = outcome.err.strip().splitlines()
    assert [line for line in lines if line.startswith("Error:")] == [lines[-1]] and "Traceback" not in outcome.err
    assert fragment in lines[-1] and outcome.out == ""


@pytest.mark.parametrize("preset", [[], ["--preset", "digits_lt"]], ids=["default-preset", "given-preset"])
def test_train_on_a_file_list_dataset_is_one_clear_error(cli, ten_class_folder, tmp_path, preset):
    outcome = cli(
        "train", "--data", ten_class_folder, *preset, "--epochs", "1", "--device", "cpu", "--out", tmp_path / "r"
    )
    _one_error(outcome, "is a list of image files (folder); this bagmar trains and evaluates only datasets held in")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("command", [["eval"], ["tune-tau"]])
def test_eval_and_tune_tau_on_a_file_list_dataset_are_one_clear_error(cli, digits_run, ten_class_folder, command):
    before = digits_run.read_bytes()
    outcome = cli(*command, digits_run, "--data", ten_class_folder, "--split", "test", "--device", "cpu")
    _one_error(outcome, "split 'test' of")
    assert digits_run.read_bytes() == before


def test_overwrite_replaces_a_file_list_dataset_but_not_a_stranger_in_it(cli, tmp_path):
    """--overwrite knows a list dataset's own files (its lists), and still refuses one that holds a user's file."""
    root = tmp_path / "tree"
    for split in ("train", "test"):
        for c in range(2):
            (root / split / f"c{c}").mkdir(parents=True)
            (root / split / f"c{c}" / "0.jpg").touch()
    args = ("prepare", "folder", "--root", root, "--out", tmp_path / "ds", "--imb", "1")
    assert cli(*args).code == 0
    assert cli(*args, "--overwrite").code == 0, "a bagmar list dataset is replaced"
    (tmp_path / "ds" / "NOTES.md").write_text("mine")
    outcome = cli(*args, "--overwrite")
    _one_error(outcome, "NOTES.md")
    assert (tmp_path / "ds" / "NOTES.md").read_text() == "mine"
