"""manifest.json and the split files: what load_manifest and load_split accept and refuse."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from bagmar_cli import __version__
from bagmar_cli.data import Manifest, load_manifest, load_split, prepare_dataset
from bagmar_cli.errors import DatasetError


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return prepare_dataset("digits", imb=10, val_per_class=5, out=tmp_path_factory.mktemp("digits") / "ds")


@pytest.fixture
def root(prepared, tmp_path):
    """A private copy of the prepared dataset, free to damage."""
    return shutil.copytree(prepared, tmp_path / "ds")


def _edit(root, change):
    path = root / "manifest.json"
    raw = json.loads(path.read_text())
    change(raw)
    path.write_text(json.dumps(raw))


def test_manifest_is_indented_json_with_every_field(root):
    text = (root / "manifest.json").read_text()
    raw = json.loads(text)
    assert text.startswith('{\n  "format_version": 3,') and raw["created_by"] == f"bagmar {__version__}"
    assert set(raw) == set(Manifest.model_fields)
    assert set(raw["splits"]) == {"train", "val", "test"}
    assert raw["splits"]["train"] == {
        "file": "train.safetensors",
        "n": sum(raw["splits"]["train"]["counts"]),
        "counts": raw["splits"]["train"]["counts"],
    }
    assert load_manifest(root).num_classes == 10


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_load_split_returns_uint8_images_and_int64_labels(root, split):
    images, labels = load_split(root, split)
    manifest = load_manifest(root)
    assert images.dtype == torch.uint8 and labels.dtype == torch.int64
    assert images.shape == (manifest.splits[split].n, 1, 8, 8)
    assert torch.bincount(labels, minlength=10).tolist() == manifest.splits[split].counts


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m.update(format_version=4), "format_version 4, newer than this bagmar reads"),
        (lambda m: m.update(colour="red"), "colour: Extra inputs are not permitted"),
        (lambda m: m.pop("classes"), "classes: Field required"),
        (lambda m: m.update(mean=[0.1, 0.2]), "mean and std need 1 values"),
        (lambda m: m["splits"]["train"].update(n=3), "counts sum to"),
        (lambda m: m["splits"]["test"].update(counts=[30] * 9 + [0, 30]), "has 11 counts for 10 classes"),
        (lambda m: m["splits"]["test"].update(file="../test.safetensors"), "must be a file name"),
        (lambda m: m.update(reported_split="holdout"), "reported_split 'holdout' is not one of the splits"),
    ],
)
def test_manifests_that_break_the_schema_are_refused(root, change, message):
    _edit(root, change)
    with pytest.raises(DatasetError, match=message):
        load_manifest(root)


def test_missing_or_unparsable_manifest(root, tmp_path):
    with pytest.raises(DatasetError, match="not a prepared dataset directory"):
        load_manifest(tmp_path / "nowhere")
    (root / "manifest.json").write_text("{not json")
    with pytest.raises(DatasetError, match="is not valid JSON"):
        load_manifest(root)


def test_unknown_split_names_the_available_ones(root):
    with pytest.raises(DatasetError, match="has no split 'valid'; available: train, val, test"):
        load_split(root, "valid")


def test_missing_or_damaged_split_file(root):
    (root / "val.safetensors").unlink()
    with pytest.raises(DatasetError, match=r"val.safetensors is missing"):
        load_split(root, "val")
    (root / "test.safetensors").write_bytes(b"\x00" * 100)
    with pytest.raises(DatasetError, match=r"test.safetensors is not a readable safetensors file"):
        load_split(root, "test")


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (lambda x, y: (x[:, :, :4], y), r"expected uint8 \(N, \*\(1, 8, 8\)\)"),
        (lambda x, y: (x.float(), y), "images are torch.float32"),
        (lambda x, y: (x, y.int()), "labels torch.int32"),
        (lambda x, y: (x, y[:-1]), "expected 50 of each"),
        (lambda x, y: (x, y + 10), r"labels outside \[0, 10\)"),
        (lambda x, y: (x, torch.zeros_like(y)), "per-class counts differ from the manifest's"),
    ],
)
def test_split_contents_must_match_the_manifest(root, tamper, message):
    images, labels = tamper(*load_split(root, "val"))
    save_file({"images": images.contiguous(), "labels": labels.contiguous()}, root / "val.safetensors")
    with pytest.raises(DatasetError, match=message):
        load_split(root, "val")


def test_split_file_without_the_expected_tensors(root):
    save_file({"pixels": torch.zeros(1, dtype=torch.uint8)}, root / "val.safetensors")
    with pytest.raises(DatasetError, match="must hold tensors 'images' and 'labels'"):
        load_split(root, "val")


FIXTURES = Path(__file__).parent / "fixtures"


def test_a_version_1_manifest_still_loads_with_its_splits(digits_data, tmp_path):
    """manifest_v1_digits.json is what bagmar 0.1.0 wrote for `prepare digits --imb 10 --val-per-class 10`."""
    old = shutil.copytree(digits_data, tmp_path / "v1")
    shutil.copyfile(FIXTURES / "manifest_v1_digits.json", old / "manifest.json")
    manifest = load_manifest(old)
    assert manifest.format_version == 1 and manifest.image_root is None and manifest.file_lists == []
    for split in ("train", "val", "test"):
        _, labels = load_split(old, split)
        assert torch.bincount(labels, minlength=10).tolist() == manifest.splits[split].counts
    assert (old / "manifest.json").read_bytes() == (FIXTURES / "manifest_v1_digits.json").read_bytes()


def test_a_version_2_manifest_still_loads_without_a_selection(digits_data, tmp_path):
    """manifest_v2_digits.json is what bagmar wrote before format_version 3 (the same `prepare digits` call)."""
    old = shutil.copytree(digits_data, tmp_path / "v2")
    shutil.copyfile(FIXTURES / "manifest_v2_digits.json", old / "manifest.json")
    manifest = load_manifest(old)
    assert manifest.format_version == 2 and manifest.selection is None
    assert manifest.splits["train"].counts == load_manifest(digits_data).splits["train"].counts


def test_a_version_2_manifest_cannot_hold_a_selection(root):
    _edit(root, lambda m: m.update(format_version=2))
    with pytest.raises(DatasetError, match="a selection record needs format_version 3"):
        load_manifest(root)


def test_a_version_1_manifest_cannot_hold_file_lists(root):
    _edit(
        root,
        lambda m: m.update(
            format_version=1,
            selection=None,
            image_root="/images",
            splits=m["splits"] | {"test": {"list_file": "test.txt", "sha256": "0" * 64, "n": 0, "counts": [0] * 10}},
        ),
    )
    with pytest.raises(DatasetError, match="file-list splits need format_version 2 and an image_root"):
        load_manifest(root)


@pytest.mark.parametrize(
    ("split", "message"),
    [
        ({"list_file": "../t.txt", "sha256": "0" * 64, "n": 0, "counts": [0] * 10}, "must be a file name"),
        ({"list_file": "t.txt", "sha256": "xyz", "n": 0, "counts": [0] * 10}, "sha256: String should match"),
        ({"list_file": "t.txt", "sha256": "0" * 64, "n": 1, "counts": [0] * 10}, "counts sum to 0, not n = 1"),
    ],
)
def test_bad_file_list_splits_are_refused(root, split, message):
    _edit(root, lambda m: m.update(image_root="/images", splits=m["splits"] | {"test": split}))
    with pytest.raises(DatasetError, match=message):
        load_manifest(root)


def test_load_split_refuses_a_file_list_split_with_one_clear_message(root):
    _edit(root, lambda m: m.update(
        image_root="/images",
        splits=m["splits"] | {"test": {"list_file": "t.txt", "sha256": "0" * 64, "n": 0, "counts": [0] * 10}},
    ))  # fmt: skip
    with pytest.raises(DatasetError, match=r"split 'test' of .* is a list of image files"):
        load_split(root, "test")


def test_a_folder_manifest_from_before_native_size_loads_and_keeps_the_random_resized_crop(tmp_path):
    """manifest_v2_folder_28px.json is what bagmar wrote for `prepare folder --imb 100 --image-size 28 --eval-resize 28`
    on Fashion-MNIST PNGs before manifests recorded the images' size (image_root made relative)."""
    from bagmar_cli.data.augment.images import TrainTransform, image_train_transform
    from bagmar_cli.data.splits import dataset_preprocess
    from bagmar_cli.settings import DataSettings

    shutil.copyfile(FIXTURES / "manifest_v2_folder_28px.json", tmp_path / "manifest.json")
    manifest = load_manifest(tmp_path)
    assert manifest.native_size is None and manifest.image_size == [3, 28, 28] and manifest.splits["train"].n == 14886
    preprocess = dataset_preprocess(manifest)
    assert (preprocess.resize, preprocess.crop) == (28, 28)
    transform = image_train_transform(DataSettings(), preprocess, native_size=manifest.native_size)
    assert isinstance(transform, TrainTransform)  # as it trained before: the size is unknown, so not "small"
