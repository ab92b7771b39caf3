"""`bagmar prepare imagenet_lt | inat2018 | places_lt`: the official lists and a version-2 manifest, no image copied."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from support.bad_input import assert_one_error_line, snapshot
from support.image_trees import benchmark_image_path

from bagmar_cli.data import load_manifest
from bagmar_cli.data.manifest import ListSplitInfo
from bagmar_cli.data.sources import benchmarks
from bagmar_cli.data.sources.benchmarks import get_benchmark


def benchmark_tree(tmp_path: Path, name: str, train_per_class=(3, 1)) -> tuple[Path, Path]:
    """An image root (empty files) and a --splits folder in the benchmark's official layout, every class listed."""
    bench = get_benchmark(name)
    root, splits = tmp_path / "images", tmp_path / "splits"
    splits.mkdir()
    for split, file in bench.lists.items():
        lines = []
        for c in range(bench.num_classes):
            n = train_per_class[c % len(train_per_class)] if split == "train" else 1
            for i in range(n):
                lines.append(f"{benchmark_image_path(name, split, c, i)} {c}")
        (splits / file).write_text("\n".join(lines) + "\n")
        for line in lines:
            path = root / line.rsplit(" ", 1)[0]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
    return root, splits


@pytest.fixture
def imagenet(tmp_path, monkeypatch):
    monkeypatch.setenv("BAGMAR_DATA_DIR", str(tmp_path / "data"))
    return benchmark_tree(tmp_path, "imagenet_lt")


def test_prepare_imagenet_lt_writes_the_official_lists_and_a_version_2_manifest(cli, imagenet, tmp_path):
    root, splits = imagenet
    before = snapshot(root, splits)
    outcome = cli("prepare", "imagenet_lt", "--root", root, "--splits", splits)
    assert outcome.code == 0, outcome.err
    out = Path(outcome.out.strip())
    assert out == tmp_path / "data" / "imagenet_lt"
    assert sorted(p.name for p in out.iterdir()) == [
        "ImageNet_LT_test.txt", "ImageNet_LT_train.txt", "ImageNet_LT_val.txt", "manifest.json",
    ]  # fmt: skip
    for file in ("ImageNet_LT_train.txt", "ImageNet_LT_val.txt", "ImageNet_LT_test.txt"):
        assert (out / file).read_bytes() == (splits / file).read_bytes()
    manifest = load_manifest(out)
    raw = json.loads((out / "manifest.json").read_text())
    assert raw["format_version"] == 3 and raw["image_root"] == str(root.resolve())
    assert manifest.num_classes == 1000 and manifest.classes[:2] == ["n00000000", "n00000001"]
    train = manifest.splits["train"]
    assert isinstance(train, ListSplitInfo) and train.n == 2000 and train.counts[:4] == [3, 1, 3, 1]
    assert train.sha256 == hashlib.sha256((splits / "ImageNet_LT_train.txt").read_bytes()).hexdigest()
    assert manifest.splits["test"].n == 1000 and manifest.imb == 3 and manifest.file_lists == ["train", "val", "test"]
    assert manifest.images_dir(out) == root.resolve() and manifest.source.verified is False
    assert manifest.reported_split == "test"
    assert manifest.native_size is None  # not read: the recipe's random-resized crop stays whatever the image size
    assert "the official list has 115846" in outcome.err and "385 many" not in outcome.err
    assert snapshot(root, splits) == before  # nothing copied, nothing touched


def test_the_image_root_may_be_recorded_relative_to_the_dataset_directory(cli, imagenet, tmp_path):
    root, splits = imagenet
    out = Path(cli("prepare", "imagenet_lt", "--root", root, "--splits", splits).out.strip())
    path = out / "manifest.json"
    path.write_text(path.read_text().replace(f'"{root.resolve()}"', '"../../images"'))
    assert load_manifest(out).images_dir(out).resolve() == root.resolve()


def test_imagenet_val_images_not_sorted_into_class_folders_are_the_layout_error(cli, imagenet, tmp_path):
    root, splits = imagenet
    for folder in (root / "val").iterdir():  # ImageNet's val archive unpacks flat
        for image in folder.iterdir():
            image.rename(root / "val" / image.name)
        folder.rmdir()
    error = assert_one_error_line(
        cli("prepare", "imagenet_lt", "--root", root, "--splits", splits),
        1,
        "ImageNet_LT_test.txt: 1000 images (val/n00000000/ILSVRC2012_val_00000000.JPEG,",
        "missing under",
        "sorted into one folder per class",
        "--no-verify",
    )
    assert "..." in error
    assert not (tmp_path / "data" / "imagenet_lt").exists()
    assert cli("prepare", "imagenet_lt", "--root", root, "--splits", splits, "--no-verify").code == 0


def test_a_missing_list_is_named_with_where_the_lists_come_from(cli, imagenet):
    root, splits = imagenet
    (splits / "ImageNet_LT_val.txt").unlink()
    assert_one_error_line(
        cli("prepare", "imagenet_lt", "--root", root, "--splits", splits),
        1,
        "lacks ImageNet_LT_val.txt",
        "classifier-balancing",
    )


def test_offline_without_splits_fails_in_seconds_naming_the_files_and_splits_option(cli, imagenet, monkeypatch):
    root, _ = imagenet
    from bagmar_cli.data import download

    monkeypatch.setattr(benchmarks, "LISTS_URL", "http://127.0.0.1:9/data")
    attempts = []
    real = download.urlopen
    monkeypatch.setattr(
        download, "urlopen", lambda url, timeout: attempts.append(timeout) or real(url, timeout=timeout)
    )
    error = assert_one_error_line(
        cli("prepare", "imagenet_lt", "--root", root), 1, "could not download", "--splits DIR"
    )
    assert attempts == [download.CONNECT_TIMEOUT]  # in seconds: one bounded attempt, then the message
    assert "ImageNet_LT_train.txt, ImageNet_LT_val.txt, ImageNet_LT_test.txt" in error


def test_lists_already_in_downloads_are_used_without_a_network(cli, imagenet, tmp_path, monkeypatch):
    root, splits = imagenet
    monkeypatch.setattr(benchmarks, "LISTS_URL", "http://127.0.0.1:9/data")
    downloads = tmp_path / "data" / "downloads"
    downloads.mkdir(parents=True)
    for file in splits.iterdir():
        (downloads / file.name).write_bytes(file.read_bytes())
    assert cli("prepare", "imagenet_lt", "--root", root).code == 0


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("train/n00000000/x.JPEG 1000", "ImageNet_LT_train.txt:2001: label 1000 is outside [0, 1000)"),
        ("../outside.JPEG 3", "ImageNet_LT_train.txt:2001: '../outside.JPEG' contains '..'"),
        ("/etc/passwd 3", "ImageNet_LT_train.txt:2001: '/etc/passwd' is an absolute path"),
        ("train/n00000000/x.JPEG", "ImageNet_LT_train.txt:2001: expected `relative/path label`"),
    ],
)
def test_bad_list_lines_are_one_error_line_with_file_and_line(cli, imagenet, line, fragment, tmp_path):
    root, splits = imagenet
    with open(splits / "ImageNet_LT_train.txt", "a") as f:
        f.write(line + "\n")
    assert_one_error_line(cli("prepare", "imagenet_lt", "--root", root, "--splits", splits), 1, fragment)
    assert not (tmp_path / "data").exists()


def test_a_class_without_training_images_is_refused(cli, imagenet):
    root, splits = imagenet
    path = splits / "ImageNet_LT_train.txt"
    path.write_text("".join(line + "\n" for line in path.read_text().splitlines() if not line.endswith(" 7")))
    assert_one_error_line(
        cli("prepare", "imagenet_lt", "--root", root, "--splits", splits), 1, "class 7 has no training image"
    )


def test_links_that_escape_the_root_or_loop_are_errors(cli, imagenet, tmp_path):
    root, splits = imagenet
    outside = tmp_path / "outside"
    (root / "train" / "n00000005").rename(outside)
    (root / "train" / "n00000005").symlink_to(outside)
    assert_one_error_line(cli("prepare", "imagenet_lt", "--root", root, "--splits", splits), 1, "resolve outside it")
    (root / "train" / "n00000005").unlink()
    (root / "train" / "n00000005").symlink_to(root / "train" / "n00000005")
    assert_one_error_line(cli("prepare", "imagenet_lt", "--root", root, "--splits", splits), 1, "symbolic link loop")


def test_a_link_inside_the_root_is_followed(cli, imagenet, tmp_path):
    root, splits = imagenet
    (root / "train" / "n00000005").rename(root / "elsewhere")
    (root / "train" / "n00000005").symlink_to(root / "elsewhere")
    assert cli("prepare", "imagenet_lt", "--root", root, "--splits", splits).code == 0


def test_inaturalist_says_val_is_its_reported_split(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("BAGMAR_DATA_DIR", str(tmp_path / "data"))
    root, splits = benchmark_tree(tmp_path, "inat2018", train_per_class=(1,))
    outcome = cli("prepare", "inat2018", "--root", root, "--splits", splits)
    assert outcome.code == 0, outcome.err
    assert "no test split: val is the split its results are reported on" in outcome.err
    manifest = load_manifest(Path(outcome.out.strip()))
    assert set(manifest.splits) == {"train", "val"} and manifest.reported_split == "val"


def test_places_lt_prepares_from_its_lists(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("BAGMAR_DATA_DIR", str(tmp_path / "data"))
    root, splits = benchmark_tree(tmp_path, "places_lt")
    outcome = cli("prepare", "places_lt", "--root", root, "--splits", splits, "--out", tmp_path / "p")
    assert outcome.code == 0, outcome.err
    assert load_manifest(tmp_path / "p").classes[:2] == ["cat0", "cat1"]


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (["imagenet_lt", "--splits", "{splits}"], 2, "prepare imagenet_lt needs --root DIR"),
        (["folder"], 2, "prepare folder needs --root DIR"),
        (["imagenet_lt", "--root", "{root}", "--imb", "10"], 2, "--imb does not apply to imagenet_lt"),
        (["imagenet_lt", "--root", "{root}", "--val-per-class", "2"], 2, "--val-per-class does not apply"),
        (["digits", "--root", "{root}"], 2, "--root does not apply to digits"),
        (["folder", "--root", "{root}", "--splits", "{splits}"], 2, "--splits does not apply to folder"),
        (["imagenet-lt", "--root", "{root}"], 2, "did you mean imagenet_lt"),
        (["imagenet_lt", "--root", "{splits}/nowhere", "--splits", "{splits}"], 1, "is not a folder"),
    ],
)
def test_options_that_do_not_fit_the_dataset_are_refused(cli, imagenet, args, code, fragment):
    root, splits = imagenet
    assert_one_error_line(cli("prepare", *[a.format(root=root, splits=splits) for a in args]), code, fragment)


def test_overwrite_rules_hold_for_file_list_datasets(cli, imagenet, tmp_path):
    root, splits = imagenet
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    assert_one_error_line(
        cli("prepare", "imagenet_lt", "--root", root, "--splits", splits, "--out", out), 1, "already exists"
    )
    assert_one_error_line(
        cli("prepare", "imagenet_lt", "--root", root, "--splits", splits, "--out", out, "--overwrite"),
        1,
        "not a dataset directory",
    )
    assert (out / "notes.txt").read_text() == "keep me"


# --- folder trees -----------------------------------------------------------------------------------------------
