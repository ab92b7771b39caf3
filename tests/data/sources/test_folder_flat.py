"""`bagmar prepare folder` on a flat ROOT/<class>/* tree (split by fractions) and with --measure-stats."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support.bad_input import assert_one_error_line

from bagmar_cli.data import load_manifest
from bagmar_cli.data.image_stats import measure_stats
from bagmar_cli.data.longtail import lt_counts
from bagmar_cli.data.sources.benchmarks import IMAGENET_MEAN, IMAGENET_STD
from bagmar_cli.data.sources.folder_tree import split_by_fractions
from bagmar_cli.errors import SettingError


def flat_tree(root: Path, classes: dict[str, int], suffix: str = ".png") -> Path:
    """ROOT/<class>/NNNN<suffix> empty files (enough for listing; --no-verify is not needed: they exist)."""
    for name, n in classes.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            (root / name / f"{i:04d}{suffix}").touch()
    return root


def read_list(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_a_flat_tree_is_split_per_class_by_the_fractions(cli, tmp_path):
    root = flat_tree(tmp_path / "tree", {"cat": 50, "dog": 20, "eel": 10})
    outcome = cli("prepare", "folder", "--root", root, "--val-fraction", "0.1", "--test-fraction", "0.2",
                  "--out", tmp_path / "ds")  # fmt: skip
    assert outcome.code == 0, outcome.err
    manifest = load_manifest(tmp_path / "ds")
    assert manifest.classes == ["cat", "dog", "eel"] and manifest.reported_split == "test"
    assert manifest.splits["test"].counts == [10, 4, 2] and manifest.splits["val"].counts == [5, 2, 1]
    assert manifest.splits["train"].counts == [35, 14, 7] and manifest.imb == 5
    lists = {split: read_list(tmp_path / "ds" / f"{split}.txt") for split in ("train", "val", "test")}
    everything = [line for lines in lists.values() for line in lines]
    assert len(everything) == len(set(everything)) == 80  # disjoint, and every image in one split
    assert "cat/0000.png 0" in everything and all(line.split("/")[0] in {"cat", "dog", "eel"} for line in everything)
    assert lists["train"] == sorted(lists["train"])  # name order within the list
    assert "train: 56 images in 3 classes, 35 to 7 per class" in outcome.err
    assert "imbalance factor 5; classes by training images: 0 many, 1 medium, 2 few" in outcome.err
    assert manifest.mean == list(IMAGENET_MEAN) and manifest.std == list(IMAGENET_STD)


def test_the_split_is_a_pure_function_of_the_seed(cli, tmp_path):
    root = flat_tree(tmp_path / "tree", {"a": 30, "b": 12})
    runs = {}
    for name, seed in (("one", "4"), ("two", "4"), ("other", "5")):
        assert cli("prepare", "folder", "--root", root, "--seed", seed, "--out", tmp_path / name).code == 0
        runs[name] = {split: (tmp_path / name / f"{split}.txt").read_bytes() for split in ("train", "val", "test")}
    assert runs["one"] == runs["two"] and runs["one"]["test"] != runs["other"]["test"]
    # the defaults: 10 % val, 20 % test, rounded to the nearest image per class
    assert load_manifest(tmp_path / "one").splits["test"].counts == [6, 2]
    assert load_manifest(tmp_path / "one").splits["val"].counts == [3, 1]


def test_no_val_fraction_means_no_val_split_and_imb_draws_a_long_tail_from_train(cli, tmp_path):
    root = flat_tree(tmp_path / "tree", dict.fromkeys("abcde", 50))
    outcome = cli("prepare", "folder", "--root", root, "--val-fraction", "0", "--test-fraction", "0.2",
                  "--imb", "10", "--out", tmp_path / "d")  # fmt: skip
    assert outcome.code == 0, outcome.err
    manifest = load_manifest(tmp_path / "d")
    assert set(manifest.splits) == {"train", "test"} and manifest.splits["test"].counts == [10] * 5
    assert manifest.splits["train"].counts == lt_counts(40, 5, 10, "exp") and manifest.profile == "exp"
    assert "barely long-tailed" not in outcome.err


def test_image_files_by_extension_in_any_case_links_followed(cli, tmp_path):
    root = tmp_path / "tree"
    for i, suffix in enumerate((".JPG", ".jpeg", ".Png", ".bmp", ".WEBP", ".tif", ".TIFF")):
        flat_tree(root, {"a": 1, "b": 1}, suffix=f"{i}{suffix}")
    (root / "a" / "notes.txt").write_text("not an image")
    (root / "a" / "photo.gif").touch()  # not one of the extensions
    flat_tree(root / "a", {"more": 3})  # a sub-folder of a class belongs to it, and a link to it is class c
    (root / "c").symlink_to(root / "a" / "more")
    outcome = cli("prepare", "folder", "--root", root, "--test-fraction", "0.3", "--val-fraction", "0",
                  "--out", tmp_path / "d")  # fmt: skip
    assert outcome.code == 0, outcome.err
    manifest = load_manifest(tmp_path / "d")
    assert manifest.classes == ["a", "b", "c"]
    totals = np.add(manifest.splits["train"].counts, manifest.splits["test"].counts).tolist()
    assert totals == [10, 7, 3]


def test_classes_missing_from_test_and_a_balanced_tree_are_warned_about(cli, tmp_path):
    root = flat_tree(tmp_path / "tree", {"a": 10, "b": 10, "c": 2})
    outcome = cli("prepare", "folder", "--root", root, "--out", tmp_path / "d")
    assert outcome.code == 0, outcome.err
    err = " ".join(outcome.err.split())
    assert "1 classes have no test images (e.g. 'c')" in err and "2 classes have no val images" not in err
    assert "1 classes have no val images (e.g. 'c')" in err  # 10 % of 2 rounds to 0
    assert "barely long-tailed" not in err  # train 7, 7, 2: 3.5
    flat_tree(tmp_path / "even", {"a": 10, "b": 10})
    outcome = cli("prepare", "folder", "--root", tmp_path / "even", "--out", tmp_path / "e")
    assert "barely long-tailed (largest / smallest class = 1, below 2)" in " ".join(outcome.err.split())


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (["--test-fraction", "0.5", "--val-fraction", "0.5"], 2, "--val-fraction + --test-fraction is 1"),
        (["--test-fraction", "0"], 2, "--test-fraction must be above 0"),
        (["--val-fraction", "-0.1"], 2, "--val-fraction must be in [0, 1)"),
        (["--test-fraction", "0.6", "--val-fraction", "0.3"], 2, "class 'tiny' has 2 images"),
        (["--val-per-class", "1"], 2, "a flat tree takes --val-fraction"),
    ],
)
def test_fractions_that_cannot_work_are_one_error_line(cli, tmp_path, args, code, fragment):
    root = flat_tree(tmp_path / "tree", {"big": 20, "tiny": 2})
    assert_one_error_line(cli("prepare", "folder", "--root", root, *args, "--out", tmp_path / "d"), code, fragment)
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize(
    ("break_it", "fragment"),
    [
        (lambda r: (r / "empty").mkdir(), "class 2 ('empty') has no training image"),
        (lambda r: (r / "a" / "loop").symlink_to(r / "a"), "symbolic link loop"),
        (lambda r: (r / "loop").symlink_to(r / "loop"), "symbolic link loop"),
        (lambda r: [p.unlink() for p in r.rglob("*.png")] and [d.rmdir() for d in list(r.iterdir())], "no class"),
    ],
)
def test_broken_flat_trees_are_one_error_line(cli, tmp_path, break_it, fragment):
    root = flat_tree(tmp_path / "tree", {"a": 5, "b": 5})
    break_it(root)
    assert_one_error_line(cli("prepare", "folder", "--root", root, "--out", tmp_path / "d"), 1, fragment)
    assert not (tmp_path / "d").exists()


def test_fractions_are_refused_for_a_tree_with_split_folders(cli, tmp_path):
    root = flat_tree(tmp_path / "tree" / "train", {"a": 3, "b": 3})
    flat_tree(tmp_path / "tree" / "test", {"a": 1, "b": 1})
    assert_one_error_line(
        cli("prepare", "folder", "--root", root.parent, "--test-fraction", "0.2", "--out", tmp_path / "d"),
        2,
        "--test-fraction splits a flat tree ROOT/<class>/*",
    )


def test_split_by_fractions_rounds_halves_up_and_keeps_every_image_once():
    labels = np.repeat(np.arange(3), [5, 15, 1])
    parts = split_by_fractions(labels, ["a", "b", "c"], 0.1, 0.3, seed=0)
    counts = {split: np.bincount(labels[idx], minlength=3).tolist() for split, idx in parts.items()}
    assert counts == {"test": [2, 5, 0], "val": [1, 2, 0], "train": [2, 8, 1]}  # 1.5 -> 2, 0.5 -> 1, 4.5 -> 5
    assert sorted(np.concatenate(list(parts.values())).tolist()) == list(range(21))
    with pytest.raises(SettingError, match="class 'c' has 1 images"):
        split_by_fractions(labels, ["a", "b", "c"], 0.1, 0.5, seed=0)


# --- measured normalisation -------------------------------------------------------------------------------------


def coloured_tree(root: Path) -> tuple[Path, np.ndarray]:
    """A flat tree of random-colour PNGs (lossless, so the expected pixels are known) and all their pixels."""
    rng = np.random.default_rng(0)
    pixels = []
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for i in range(6):
            array = rng.integers(0, 256, (8 + i, 10, 3), dtype=np.uint8)
            array[..., 2] //= 2  # a blue channel with a different mean
            Image.fromarray(array).save(root / name / f"{i}.png")
            pixels.append(array.reshape(-1, 3))
    return root, np.concatenate(pixels).astype(np.float64) / 255


def test_measure_stats_records_the_training_split_mean_and_std(cli, tmp_path):
    root, _ = coloured_tree(tmp_path / "tree")
    outcome = cli("prepare", "folder", "--root", root, "--measure-stats", "--out", tmp_path / "d")
    assert outcome.code == 0, outcome.err
    manifest = load_manifest(tmp_path / "d")
    train = [line.rsplit(" ", 1)[0] for line in read_list(tmp_path / "d" / "train.txt")]
    pixels = np.concatenate([np.asarray(Image.open(root / p)).reshape(-1, 3) for p in train]) / 255
    np.testing.assert_allclose(manifest.mean, pixels.mean(0), atol=1e-6)
    np.testing.assert_allclose(manifest.std, pixels.std(0), atol=1e-6)
    assert manifest.mean[2] < 0.3 < manifest.mean[0]
    assert f"Measured on {len(train)} training images" in " ".join(outcome.err.split())
    raw = json.loads((tmp_path / "d" / "manifest.json").read_text())
    assert raw["mean"] == manifest.mean


def test_measure_stats_samples_at_most_n_images_and_skips_undecodable_ones(tmp_path, capsys):
    root, _ = coloured_tree(tmp_path / "tree")
    (root / "a" / "broken.png").write_bytes(b"not a png")
    paths = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png"))
    stats = measure_stats(root, paths, sample=5, seed=1)
    assert stats.measured + stats.failed == 5
    everything = measure_stats(root, paths)
    assert everything.measured == 12 and everything.failed == 1
    assert "1 images could not be decoded" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda p: p.write_bytes(b"junk"), "none of the training images could be decoded"),
        (lambda p: Image.new("RGB", (9, 9), (10, 20, 30)).save(p, "PNG"), "has the same value in every measured pixel"),
    ],
)
def test_measure_stats_on_images_it_cannot_use_is_one_error_line(cli, tmp_path, make, fragment):
    for name in ("a", "b"):
        for i in range(5):
            (tmp_path / "tree" / name).mkdir(parents=True, exist_ok=True)
            make(tmp_path / "tree" / name / f"{i}.png")
    outcome = cli("prepare", "folder", "--root", tmp_path / "tree", "--measure-stats", "--out", tmp_path / "d")
    assert_one_error_line(outcome, 1, fragment)
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("flag", [["--measure-stats"], ["--val-fraction", "0.1"], ["--test-fraction", "0.1"]])
def test_folder_only_options_are_refused_elsewhere(cli, tmp_path, flag):
    assert_one_error_line(
        cli("prepare", "digits", *flag, "--out", tmp_path / "d"), 2, f"{flag[0]} does not apply to digits"
    )
    assert not os.path.exists(tmp_path / "d")


@pytest.mark.parametrize("flag", [["--image-size", "28"], ["--eval-resize", "32"]])
@pytest.mark.parametrize("dataset", ["digits", "imagenet_lt"])
def test_input_size_options_are_folder_only(cli, tmp_path, flag, dataset):
    root = [] if dataset == "digits" else ["--root", tmp_path]  # an in-memory dataset refuses --root too
    assert_one_error_line(
        cli("prepare", dataset, *flag, *root, "--out", tmp_path / "d"), 2, f"{flag[0]} does not apply to {dataset}"
    )
    assert not os.path.exists(tmp_path / "d")


@pytest.mark.parametrize(
    ("args", "size", "resize"),
    [([], 224, 256), (["--image-size", "28"], 28, 32), (["--image-size", "28", "--eval-resize", "28"], 28, 28)],
)
def test_image_size_and_eval_resize_are_recorded_and_used_by_evaluation(cli, tmp_path, args, size, resize):
    from bagmar_cli.data.splits import dataset_preprocess

    root = flat_tree(tmp_path / "tree", {"cat": 10, "dog": 10})
    outcome = cli("prepare", "folder", "--root", root, *args, "--out", tmp_path / "ds")
    assert outcome.code == 0, outcome.err
    manifest = load_manifest(tmp_path / "ds")
    assert manifest.image_size == [3, size, size]
    assert manifest.eval_resize == (int(args[-1]) if "--eval-resize" in args else None)  # None: size * 256/224
    preprocess = dataset_preprocess(manifest)
    assert (preprocess.resize, preprocess.crop) == (resize, size)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--image-size", "0"], "--image-size must be at least 1, got 0"),
        (["--image-size", "28", "--eval-resize", "27"], "--eval-resize 27 is smaller than the image size 28"),
        (["--eval-resize", "200"], "--eval-resize 200 is smaller than the image size 224"),
    ],
)
def test_bad_input_sizes_are_one_error_line_and_nothing_written(cli, tmp_path, args, fragment):
    root = flat_tree(tmp_path / "tree", {"cat": 10, "dog": 10})
    assert_one_error_line(cli("prepare", "folder", "--root", root, *args, "--out", tmp_path / "ds"), 2, fragment)
    assert not (tmp_path / "ds").exists()


# --- small images (issues 24 and 25): their size is recorded, an upscaling default is warned about ---------------


def image_tree(root: Path, size: tuple[int, int], per_class: int = 6, mode: str = "L", suffix: str = ".png") -> Path:
    """ROOT/<class>/NNNN<suffix>: real images of `size` (width, height), two classes."""
    rng = np.random.default_rng(0)
    for name in ("coat", "shoe"):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], 3)
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(root / name / f"{i:04d}{suffix}")
    return root


def test_small_images_at_the_default_224_are_warned_about_naming_image_size(cli, tmp_path):
    root = image_tree(tmp_path / "tree", (28, 28))
    outcome = cli("prepare", "folder", "--root", root, "--out", tmp_path / "ds")
    assert outcome.code == 0, outcome.err
    warnings = [line for line in outcome.err.splitlines() if "upscaled" in line]
    assert warnings == [
        "Warning: the training images are 28x28 pixels (median), but the network will see them at 224x224, the "
        "--image-size default for ImageNet backbones: each is upscaled 8x, at 64x the compute of their own size; to "
        "train at their size pass --image-size 28 (and --measure-stats for their own mean and std instead of "
        "ImageNet's)"
    ]
    manifest = load_manifest(tmp_path / "ds")
    assert manifest.native_size == [28, 28] and manifest.image_size == [3, 224, 224]
    assert manifest.eval_resize == 224  # small images are evaluated whole, as their pad-and-crop trains on them


@pytest.mark.parametrize(
    ("args", "resize"), [(["--image-size", "28"], 28), (["--image-size", "28", "--eval-resize", "32"], 32)]
)
def test_small_images_at_their_own_size_are_not_warned_about_and_evaluated_whole(cli, tmp_path, args, resize):
    from bagmar_cli.data.splits import dataset_preprocess

    root = image_tree(tmp_path / "tree", (28, 28))
    outcome = cli("prepare", "folder", "--root", root, *args, "--out", tmp_path / "ds")
    assert outcome.code == 0 and "upscaled" not in outcome.err and "Warning: the training images" not in outcome.err
    preprocess = dataset_preprocess(load_manifest(tmp_path / "ds"))
    assert (preprocess.resize, preprocess.crop) == (resize, 28)  # --eval-resize still decides when given


def test_measured_stats_are_not_suggested_again_and_large_images_are_not_warned_about(cli, tmp_path):
    small = cli("prepare", "folder", "--root", image_tree(tmp_path / "s", (20, 16)), "--measure-stats",
                "--out", tmp_path / "ds")  # fmt: skip
    assert small.code == 0 and "pass --image-size 16\n" in small.err and "--measure-stats for" not in small.err
    assert load_manifest(tmp_path / "ds").native_size == [16, 20]  # [height, width]
    large = cli("prepare", "folder", "--root", image_tree(tmp_path / "l", (300, 200), 2, "RGB", ".jpg"),
                "--out", tmp_path / "dl")  # fmt: skip
    manifest = load_manifest(tmp_path / "dl")
    assert large.code == 0 and "Warning: the training images" not in large.err
    assert manifest.native_size == [200, 300] and manifest.eval_resize is None  # 256, as ImageNet models evaluate
