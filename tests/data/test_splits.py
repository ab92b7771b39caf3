"""data/splits.py: the evaluation preprocessing a dataset expects, and tensor splits fetched a batch at a time."""

from __future__ import annotations

import json

import pytest
import torch
from torch.utils.data import DataLoader

from bagmar_cli.data import load_manifest
from bagmar_cli.data.splits import collate_eval, dataset_preprocess, eval_loader, open_eval_split, open_split
from bagmar_cli.errors import DatasetError


def _folder_dataset(tmp_path, **manifest_changes):
    from bagmar_cli.data import prepare_folder

    for split in ("train", "test"):
        for c in range(2):
            (tmp_path / "tree" / split / f"c{c}").mkdir(parents=True)
            (tmp_path / "tree" / split / f"c{c}" / "0.jpg").touch()
    out = prepare_folder(root=tmp_path / "tree", out=tmp_path / "ds")
    if manifest_changes:
        path = out / "manifest.json"
        path.write_text(json.dumps(json.loads(path.read_text()) | manifest_changes))
    return out


@pytest.mark.parametrize(
    ("changes", "crop", "expected"),
    [
        ({}, None, (256, 224)),
        ({}, 32, (37, 32)),
        ({"eval_resize": 240}, None, (240, 224)),
        ({"eval_resize": 224}, 112, (112, 112)),
    ],
)
def test_the_preprocessing_follows_the_manifest_and_data_crop(tmp_path, changes, crop, expected):
    manifest = load_manifest(_folder_dataset(tmp_path, **changes))
    pre = dataset_preprocess(manifest, crop)
    assert (pre.resize, pre.crop) == expected and pre.mean == manifest.mean and pre.std == manifest.std


def test_an_eval_resize_smaller_than_the_crop_is_refused(tmp_path):
    with pytest.raises(DatasetError, match="eval_resize 200 is smaller than the crop"):
        load_manifest(_folder_dataset(tmp_path, eval_resize=200))


def test_tensor_batches_equal_the_per_image_path(digits_data):
    manifest = load_manifest(digits_data)
    batched = open_eval_split(digits_data, "val", None, manifest.mean, manifest.std)
    whole = next(iter(eval_loader(batched.dataset, 1000)))
    per_image = open_split(digits_data, "val", batched.dataset.transform)
    one_by_one = next(iter(DataLoader(per_image.dataset, 1000, collate_fn=collate_eval)))
    assert torch.equal(whole.images, one_by_one.images) and torch.equal(whole.labels, per_image.labels)
    assert len(whole.labels) == 100 and whole.failed == []


# -- undecodable training images -------------------------------------------------------------------------------


def _batches(*sizes: int) -> list:
    """Collated batches: `n` decodable images labelled by their batch's position, or -n: n undecodable ones."""
    from bagmar_cli.data.images import Batch, Undecodable

    out = []
    for at, n in enumerate(sizes):
        bad = [Undecodable(f"b{at}-{i}.jpg", "broken") for i in range(-n)]
        good = max(n, 0)
        out.append(Batch(torch.zeros(good, 3, 2, 2), torch.full((good,), at, dtype=torch.int64), bad))
    return out


def test_one_process_leaves_out_a_batch_of_which_no_image_decodes():
    from bagmar_cli.data.splits import SkipUndecodable

    skipping = SkipUndecodable(_batches(2, -2, 2), split_size=6, max_fraction=1.0)
    assert [labels.tolist() for _, labels in skipping] == [[0, 0], [2, 2]] and skipping.failed == 2


def test_several_processes_repeat_the_last_good_batch_so_every_rank_takes_the_same_steps():
    from bagmar_cli.data.splits import SkipUndecodable

    skipping = SkipUndecodable(_batches(2, -2, 1), split_size=6, max_fraction=1.0, same_steps=True)
    assert [labels.tolist() for _, labels in skipping] == [[0, 0], [0, 0], [2]] and skipping.failed == 2


def test_several_processes_stop_when_an_epochs_first_batch_has_no_image_that_decodes():
    from bagmar_cli.data.splits import SkipUndecodable

    skipping = SkipUndecodable(_batches(-2, 2), split_size=4, max_fraction=1.0, same_steps=True)
    with pytest.raises(DatasetError, match=r"none of the 2 images of an epoch's first batch decode \(the first: b0-0"):
        list(skipping)
