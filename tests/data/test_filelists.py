"""Split lists: the official lists parse to their published sizes; bad lines are refused with file and line."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from bagmar_cli.data.filelists import check_every_class, from_pairs, parse_list, write_list
from bagmar_cli.data.sources.benchmarks import BENCHMARKS, get_benchmark
from bagmar_cli.errors import DatasetError, SettingError
from bagmar_cli.functional.metrics import shot_groups

REFERENCE = Path(__file__).resolve().parents[2] / "../shared/reference"
SPLITS = REFERENCE / "splits"
COUNTS = REFERENCE / "class_counts"


def _reference(path: Path) -> Path:
    if not path.is_file():
        pytest.skip(f"{path} is absent (../shared is not beside this checkout)")
    return path


@pytest.mark.parametrize(
    ("bench", "split"),
    [("imagenet_lt", "val"), ("imagenet_lt", "test"), ("inat2018", "val")],
)
def test_the_official_lists_parse_to_their_published_sizes(bench, split):
    spec = get_benchmark(bench)
    files = parse_list(_reference(SPLITS / spec.lists[split]), spec.num_classes)
    assert len(files.paths) == spec.sizes[split]
    counts = files.counts(spec.num_classes)
    assert min(counts) > 0 and sum(counts) == spec.sizes[split]
    if bench == "imagenet_lt":  # balanced: 20 val and 50 test images per class
        assert set(counts) == {spec.sizes[split] // 1000}
    assert len(files.sha256) == 64


def test_the_imagenet_lt_test_list_points_into_class_folders_of_imagenet_val():
    files = parse_list(_reference(SPLITS / "ImageNet_LT_test.txt"), 1000)
    assert all(path.startswith("val/n") and "/ILSVRC2012_val_" in path for path in files.paths)


@pytest.mark.parametrize(
    ("bench", "file", "many_medium_few"),
    [("imagenet_lt", "ImageNet_LT_train.json", (385, 479, 136)), ("inat2018", "iNaturalist18_train.json", None)],
)
def test_reference_training_counts_match_the_benchmark_specs(bench, file, many_medium_few):
    spec = get_benchmark(bench)
    counts = json.loads(_reference(COUNTS / file).read_text())
    assert len(counts) == spec.num_classes and sum(counts) == spec.sizes["train"]
    assert (max(counts), min(counts)) == {"imagenet_lt": (1280, 5), "inat2018": (1000, 2)}[bench]
    if many_medium_few:
        groups = shot_groups(torch.tensor(counts))
        assert tuple(int(groups[g].sum()) for g in ("many", "medium", "few")) == many_medium_few


def test_every_benchmark_names_its_official_lists_and_reported_split():
    assert set(BENCHMARKS) == {"imagenet_lt", "inat2018", "places_lt"}
    assert get_benchmark("inat2018").reported_split == "val" and "test" not in get_benchmark("inat2018").lists
    assert get_benchmark("places_lt").sizes == {"train": 62_500, "val": 7_300, "test": 36_500}
    for bench in BENCHMARKS.values():
        assert set(bench.lists) == set(bench.sizes) == set(bench.layout)
        assert all(bench.url(split).endswith(f"/{file}") for split, file in bench.lists.items())
    with pytest.raises(SettingError, match="unknown benchmark 'imagenet-lt'; choose from imagenet_lt, inat2018"):
        get_benchmark("imagenet-lt")


def test_a_list_parses_to_paths_labels_counts_and_its_sha256(tmp_path):
    path = tmp_path / "l.txt"
    path.write_bytes(b"train/a/1.jpg 0\ntrain/b/with space.jpg 2\n\ntrain/a/2.jpg 0\n")
    files = parse_list(path, 3)
    assert files.paths == ["train/a/1.jpg", "train/b/with space.jpg", "train/a/2.jpg"]
    assert files.labels.tolist() == [0, 2, 0] and files.counts(3) == [2, 0, 1]

    assert files.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("train/a/1.jpg", "expected `relative/path label`"),
        ("train/a/1.jpg x", "label 'x' is not a whole number"),
        ("train/a/1.jpg 1.5", "label '1.5' is not a whole number"),
        ("train/a/1.jpg 3", r"label 3 is outside \[0, 3\)"),
        ("train/a/1.jpg -1", r"label -1 is outside \[0, 3\)"),
        ("/etc/passwd 0", "is an absolute path"),
        ("C:/images/1.jpg 0", "is an absolute path"),
        ("train/../../etc/passwd 0", "contains '..'"),
        ("..\\secret.jpg 0", "contains '..'"),
    ],
)
def test_bad_lines_are_refused_with_file_and_line_number(tmp_path, line, message):
    path = tmp_path / "bad.txt"
    path.write_text(f"train/a/0.jpg 0\n{line}\n")
    with pytest.raises(DatasetError, match=f"^{path}:2: .*{message}"):
        parse_list(path, 3)


def test_unreadable_and_binary_lists_are_refused(tmp_path):
    with pytest.raises(DatasetError, match="cannot read split list"):
        parse_list(tmp_path / "absent.txt", 3)
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(DatasetError, match="not a text file"):
        parse_list(tmp_path / "bin.txt", 3)


def test_a_class_without_training_images_is_refused(tmp_path):
    with pytest.raises(DatasetError, match=r"t.txt: class 1 \('dog'\) and 1 more has no training image"):
        check_every_class([3, 0, 0], tmp_path / "t.txt", ["cat", "dog", "eel"])
    check_every_class([1, 1], tmp_path / "t.txt")


def test_a_list_built_in_memory_writes_the_bytes_its_sha256_names(tmp_path):
    files = from_pairs(["train/a/1.png", "train/b/2.png"], np.array([0, 1]))
    write_list(tmp_path / "train.txt", files)
    again = parse_list(tmp_path / "train.txt", 2)
    assert again.sha256 == files.sha256 and again.paths == files.paths
