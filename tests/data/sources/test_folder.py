"""`bagmar prepare folder` on a ROOT/{train,val,test}/<class>/* tree: lists with sorted class names, no image copied."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from support.bad_input import assert_one_error_line

from bagmar_cli.data import load_manifest
from bagmar_cli.data.longtail import lt_counts


def folder_tree(root: Path, splits: dict[str, dict[str, int]]) -> Path:
    for split, classes in splits.items():
        for name, n in classes.items():
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                (root / split / name / f"{i:04d}.png").touch()
    return root


def test_prepare_folder_lists_each_split_with_sorted_class_names(cli, tmp_path):
    root = folder_tree(tmp_path / "tree", {"train": {"b": 5, "a": 40, "c": 2}, "test": {"a": 2, "b": 2, "c": 1}})
    (root / "train" / "a" / "notes.txt").write_text("not an image")
    (root / "train" / "a" / "sub").mkdir()
    (root / "train" / "a" / "sub" / "extra.JPG").touch()
    outcome = cli("prepare", "folder", "--root", root, "--out", tmp_path / "ds")
    assert outcome.code == 0, outcome.err
    manifest = load_manifest(tmp_path / "ds")
    assert manifest.classes == ["a", "b", "c"] and manifest.dataset == "folder" and manifest.profile == "as-listed"
    assert manifest.splits["train"].counts == [41, 5, 2] and manifest.splits["test"].counts == [2, 2, 1]
    assert "val" not in manifest.splits and manifest.imb == 20.5
    lines = (tmp_path / "ds" / "train.txt").read_text().splitlines()
    assert lines[:2] == ["train/a/0000.png 0", "train/a/0001.png 0"] and "train/a/sub/extra.JPG 0" in lines
    assert "imbalance factor 20.5" in outcome.err and "0 many, 1 medium, 2 few" in outcome.err


def test_prepare_folder_draws_a_long_tail_and_holds_out_val(cli, tmp_path):
    root = folder_tree(tmp_path / "tree", {"train": dict.fromkeys("abcde", 60), "test": dict.fromkeys("abcde", 3)})
    outcome = cli("prepare", "folder", "--root", root, "--imb", "10", "--val-per-class", "5", "--out", tmp_path / "d")
    assert outcome.code == 0, outcome.err
    manifest = load_manifest(tmp_path / "d")
    assert manifest.splits["train"].counts == [55, *lt_counts(60, 5, 10, "exp")[1:]]
    assert manifest.splits["val"].counts == [5] * 5 and manifest.imb == 10 and manifest.profile == "exp"
    val = set((tmp_path / "d" / "val.txt").read_text().splitlines())
    assert not val & set((tmp_path / "d" / "train.txt").read_text().splitlines())


def test_a_balanced_folder_tree_is_warned_about(cli, tmp_path):
    root = folder_tree(tmp_path / "tree", {"train": dict.fromkeys("ab", 4), "test": {"a": 1}})
    outcome = cli("prepare", "folder", "--root", root, "--out", tmp_path / "d")
    assert outcome.code == 0 and "barely long-tailed" in outcome.err and "no test images (e.g. 'b')" in outcome.err


@pytest.mark.parametrize(
    ("break_it", "code", "fragment"),
    [
        (lambda r: (r / "test" / "zebra").mkdir(), 1, "test/zebra is a class folder that"),
        (lambda r: [p.unlink() for p in (r / "train" / "b").iterdir()], 1, "class 1 ('b') has no training image"),
        (lambda r: (r / "train" / "a" / "loop").symlink_to(r / "train" / "a"), 1, "symbolic link loop"),
        (lambda r: (r / "train" / "a" / "self.png").symlink_to(r / "train" / "a" / "self.png"), 1, "link loop"),
        (lambda r: os.rename(r / "test", r / "tests"), 1, "test is not a folder"),
        (lambda r: (r / "val" / "a").mkdir(parents=True), 2, "pass --val-per-class only for a tree without"),
        (lambda r: (r / "train" / "b" / "0001.png").unlink(), 2, "val_per_class 1 leaves class 'b' no training"),
    ],
)
def test_broken_folder_trees_are_one_error_line(cli, tmp_path, break_it, code, fragment):
    root = folder_tree(tmp_path / "tree", {"train": {"a": 3, "b": 2}, "test": {"a": 1, "b": 1}})
    break_it(root)
    outcome = cli("prepare", "folder", "--root", root, "--val-per-class", "1", "--out", tmp_path / "d")
    assert_one_error_line(outcome, code, fragment)
    assert not (tmp_path / "d").exists()
