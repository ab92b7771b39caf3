"""scikit-learn's bundled 8x8 handwritten digits: the dataset that needs no download."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from bagmar_cli.console import warn
from bagmar_cli.data.longtail import shuffled_by_class
from bagmar_cli.data.manifest import SourceInfo
from bagmar_cli.data.sources.registry import Source, register_source
from bagmar_cli.data.sources.tensors import DatasetSpec, SourceData, tensor_source
from bagmar_cli.errors import DatasetError, SettingError

NUM_CLASSES = 10
TEST_PER_CLASS = 30  # a balanced 300-image test split, held out of the 1,797 images
TEST_SEED = 0  # fixed, so that every `seed` is evaluated on the same test images
SHA256 = "65e5b4619795efb40c1082f4c350c049e4ad552200d369b6ae99e21eef5e72c5"  # raw 0-16 pixels, then int64 labels


def load_digits_source(source: Path | None) -> SourceData:
    """The digits as uint8 (N, 1, 8, 8) images scaled 0-16 -> 0-255, split into a training pool and a test set."""
    if source is not None:
        raise SettingError("the digits dataset ships with scikit-learn and takes no `source`")
    from sklearn.datasets import load_digits  # here: scikit-learn (and SciPy) take a second to import

    bunch = load_digits()
    raw, labels = bunch.images.astype(np.uint8), bunch.target.astype(np.int64)
    if not np.array_equal(raw, bunch.images) or raw.max() > 16:
        raise DatasetError("scikit-learn's digits are not integers in 0-16 as expected")
    images = np.round(raw.astype(np.float64) * 255 / 16).astype(np.uint8)[:, None]
    test = np.concatenate([idx[:TEST_PER_CLASS] for idx in shuffled_by_class(labels, NUM_CLASSES, TEST_SEED)])
    train = np.setdiff1d(np.arange(len(labels)), test)
    classes = [str(digit) for digit in range(NUM_CLASSES)]
    return SourceData(images[train], labels[train], images[test], labels[test], classes, _source_info(raw, labels))


def _source_info(raw: np.ndarray, labels: np.ndarray) -> SourceInfo:
    """The scikit-learn version and a SHA-256 of the arrays, compared with the known one."""
    import sklearn

    digest = hashlib.sha256(raw.tobytes() + labels.astype("<i8").tobytes()).hexdigest()
    if digest != SHA256:
        warn(f"scikit-learn {sklearn.__version__}'s digits differ from the known ones (SHA-256 {digest})")
    return SourceInfo(
        name=f"sklearn.datasets.load_digits (scikit-learn {sklearn.__version__})",
        sha256=digest,
        verified=digest == SHA256,
    )


@register_source("digits")
def digits() -> Source:
    """Digits-LT: 10 classes of 8x8 grey images; n_max is the smallest class of the training pool."""
    spec = DatasetSpec(
        name="digits",
        num_classes=NUM_CLASSES,
        n_max=None,
        image_size=(1, 8, 8),
        mean=(0.3053,),
        std=(0.3759,),
        default_preset="digits_lt",
        load_source=load_digits_source,
    )
    return tensor_source(spec)
