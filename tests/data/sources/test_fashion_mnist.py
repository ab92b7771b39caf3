"""Fashion-MNIST: the strict IDX reader, generated files in the official layout, and the real files."""

import urllib.error

import numpy as np
import pytest

from bagmar_cli.data import load_manifest, lt_counts, prepare_dataset
from bagmar_cli.data.sources.fashion_mnist import IMAGES_MAGIC, LABELS_MAGIC, SYSTEM_DIR, load_fashion_mnist, read_idx
from bagmar_cli.errors import DatasetError, DownloadError


def _write_split(helpers, folder, prefix, labels, *, gz=False, side=28):
    images = helpers.indexed_images(len(labels), side * side).reshape(-1, side, side)
    suffix = ".gz" if gz else ""
    helpers.write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images, IMAGES_MAGIC, gz=gz)
    helpers.write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels.astype(np.uint8), LABELS_MAGIC, gz=gz)


@pytest.fixture(scope="module")
def generated(tmp_path_factory, helpers):
    """A folder with full-size generated IDX files: train plain, test gzipped."""
    folder = tmp_path_factory.mktemp("fashion")
    _write_split(helpers, folder, "train", np.arange(60_000) % 10)
    _write_split(helpers, folder, "t10k", np.arange(10_000) % 10, gz=True)
    return folder


@pytest.mark.parametrize(("imb", "total"), [(100, 14_886), (10, 24_516)])
def test_long_tail_counts(generated, tmp_path, imb, total):
    manifest = load_manifest(prepare_dataset("fashion_mnist", imb=imb, source=generated, out=tmp_path / "ds"))
    assert manifest.splits["train"].n == total and manifest.splits["train"].counts == lt_counts(6000, 10, imb, "exp")
    assert manifest.splits["test"].n == 10_000 and manifest.image_size == [1, 28, 28]
    assert manifest.classes[0] == "T-shirt/top" and manifest.classes[9] == "Ankle boot"
    assert not manifest.source.verified


def test_gzip_and_plain_read_the_same(tmp_path, helpers):
    array = helpers.indexed_images(7, 28 * 28).reshape(7, 28, 28)
    plain = helpers.write_idx(tmp_path / "a", array, IMAGES_MAGIC)
    packed = helpers.write_idx(tmp_path / "a.gz", array, IMAGES_MAGIC, gz=True)
    (first, md5_plain), (second, md5_gz) = read_idx(plain, IMAGES_MAGIC), read_idx(packed, IMAGES_MAGIC)
    assert np.array_equal(first, array) and np.array_equal(second, array) and md5_plain == md5_gz


def test_bad_magic_is_refused(tmp_path, helpers):
    path = helpers.write_idx(tmp_path / "labels", np.zeros(5, np.uint8), 0x00000802)
    with pytest.raises(DatasetError, match=r"labels has magic number 0x00000802, expected 0x00000801"):
        read_idx(path, LABELS_MAGIC)


@pytest.mark.parametrize("cut", [3, 10, 100])
def test_truncated_files_are_refused(tmp_path, helpers, cut):
    path = helpers.write_idx(tmp_path / "images", np.zeros((2, 28, 28), np.uint8), IMAGES_MAGIC)
    path.write_bytes(path.read_bytes()[:-cut] if cut != 3 else path.read_bytes()[:cut])
    with pytest.raises(DatasetError, match=r"images (is truncated|holds \d+ bytes but its header)"):
        read_idx(path, IMAGES_MAGIC)


def test_truncated_gzip_is_refused(tmp_path, helpers):
    path = helpers.write_idx(tmp_path / "images.gz", np.ones((50, 28, 28), np.uint8), IMAGES_MAGIC, gz=True)
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(DatasetError, match=r"images.gz cannot be read"):
        read_idx(path, IMAGES_MAGIC)


def test_count_mismatch_between_images_and_labels(tmp_path, helpers):
    _write_split(helpers, tmp_path, "train", np.arange(20) % 10)
    _write_split(helpers, tmp_path, "t10k", np.arange(10) % 10)
    helpers.write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(19, np.uint8), LABELS_MAGIC)
    with pytest.raises(DatasetError, match=r"holds 20 images but .*train-labels-idx1-ubyte 19 labels"):
        load_fashion_mnist(tmp_path)


def test_wrong_image_size_and_missing_files(tmp_path, helpers):
    _write_split(helpers, tmp_path, "train", np.arange(20) % 10, side=27)
    with pytest.raises(DatasetError, match="lacks t10k-images-idx3-ubyte"):
        load_fashion_mnist(tmp_path)
    _write_split(helpers, tmp_path, "t10k", np.arange(10) % 10)
    with pytest.raises(DatasetError, match="holds 27x27 images, expected 28x28"):
        load_fashion_mnist(tmp_path)


@pytest.mark.skipif(not SYSTEM_DIR.is_dir(), reason=f"{SYSTEM_DIR} is absent (apt-get install dataset-fashion-mnist)")
def test_real_files_read_and_verify(tmp_path):
    data = load_fashion_mnist(None)
    assert data.train_images.shape == (60_000, 1, 28, 28) and data.test_images.shape == (10_000, 1, 28, 28)
    assert data.source.verified
    assert abs(data.train_images.mean() / 255 - 0.2860) < 1e-4 and abs(data.train_images.std() / 255 - 0.3530) < 1e-4
    manifest = load_manifest(prepare_dataset("fashion_mnist", imb=100, out=tmp_path / "ds"))
    assert manifest.splits["train"].n == 14_886 and manifest.source.verified


def test_without_source_reads_downloads_and_fails_fast_offline(tmp_path, helpers, monkeypatch):
    monkeypatch.setattr("bagmar_cli.data.sources.fashion_mnist.SYSTEM_DIR", tmp_path / "not-installed")
    monkeypatch.setattr("bagmar_cli.data.download.urlopen", _offline)
    monkeypatch.setenv("BAGMAR_DATA_DIR", str(tmp_path))
    with pytest.raises(DownloadError, match=r"could not download http://fashion-mnist\.s3.*`source`"):
        load_fashion_mnist(None)
    downloads = tmp_path / "downloads"
    _write_split(helpers, downloads, "train", np.arange(60_000) % 10, gz=True)
    _write_split(helpers, downloads, "t10k", np.arange(10_000) % 10, gz=True)
    assert load_fashion_mnist(None).train_labels.shape == (60_000,)


def _offline(url, timeout):
    raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")
