"""Digits-LT: the embedded dataset, with a fixed balanced test split and a satisfiable long tail."""

import numpy as np
import pytest

from bagmar_cli.data import load_manifest, load_split, lt_counts, prepare_dataset
from bagmar_cli.data.sources.digits import TEST_PER_CLASS
from bagmar_cli.errors import SettingError

POOL_MIN = 174 - TEST_PER_CLASS  # the smallest digit class (8) has 174 of the 1,797 images


@pytest.mark.parametrize(("imb", "profile"), [(10, "exp"), (100, "exp"), (5, "step")])
def test_train_split_follows_the_profile_from_the_smallest_class(tmp_path, imb, profile):
    root = prepare_dataset("digits", imb=imb, profile=profile, out=tmp_path / "ds")
    manifest = load_manifest(root)
    assert manifest.splits["train"].counts == lt_counts(POOL_MIN, 10, imb, profile)
    assert manifest.splits["test"].counts == [TEST_PER_CLASS] * 10
    assert (manifest.classes, manifest.image_size, manifest.default_preset) == (
        [str(d) for d in range(10)],
        [1, 8, 8],
        "digits_lt",
    )
    assert manifest.source.verified and manifest.source.sha256


def test_images_are_scaled_to_the_full_uint8_range(tmp_path):
    images, labels = load_split(prepare_dataset("digits", imb=1, out=tmp_path / "ds"), "train")
    assert images.dtype.is_floating_point is False and int(images.max()) == 255 and int(images.min()) == 0
    assert len(labels) == 10 * POOL_MIN


def test_val_split_shrinks_n_max_so_the_profile_stays_exact(tmp_path):
    manifest = load_manifest(prepare_dataset("digits", imb=10, val_per_class=20, out=tmp_path / "ds"))
    assert manifest.splits["val"].counts == [20] * 10
    assert manifest.splits["train"].counts == lt_counts(POOL_MIN - 20, 10, 10, "exp")


def test_test_split_is_the_same_for_every_seed(tmp_path):
    tests = [load_split(prepare_dataset("digits", seed=s, out=tmp_path / str(s)), "test")[0] for s in (0, 1)]
    trains = [load_split(tmp_path / str(s), "train")[0] for s in (0, 1)]
    assert np.array_equal(tests[0], tests[1])
    assert not np.array_equal(trains[0], trains[1])


def test_rejects_a_source_and_an_empty_tail(tmp_path):
    with pytest.raises(SettingError, match="takes no `source`"):
        prepare_dataset("digits", source=tmp_path, out=tmp_path / "ds")
    with pytest.raises(SettingError, match="imbalance factor 500 leaves class '8' no training images"):
        prepare_dataset("digits", imb=500, out=tmp_path / "ds")
    assert not (tmp_path / "ds").exists()
