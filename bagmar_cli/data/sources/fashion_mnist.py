"""Fashion-MNIST from the official IDX files (gzipped or not), with a strict IDX reader."""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from bagmar_cli.console import info, warn
from bagmar_cli.data.download import Resource, fetch, md5_bytes
from bagmar_cli.data.manifest import SourceInfo
from bagmar_cli.data.sources.registry import Source, register_source
from bagmar_cli.data.sources.tensors import DatasetSpec, SourceData, tensor_source
from bagmar_cli.errors import DatasetError

IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions
LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension
SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist package
URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
TRAIN_PER_CLASS, TEST_PER_CLASS = 6000, 1000

# name -> (published MD5 of name.gz, MD5 of the decompressed IDX file). Contents are verified decompressed,
# so that recompressed copies (Debian's gzip -n files) and plain files verify too.
FILES = {
    "train-images-idx3-ubyte": ("8d4fb7e6c68d591d4c3dfef9ec88bf0d", "f4a8712d7a061bf5bd6d2ca38dc4d50a"),
    "train-labels-idx1-ubyte": ("25c81989df183df01b3e8a0aad5dffbe", "9018921c3c673c538a1fc5bad174d6f9"),
    "t10k-images-idx3-ubyte": ("bef4ecab320f06d8554ea6380940ec79", "8181f5470baa50b63fa0f6fddb340f0a"),
    "t10k-labels-idx1-ubyte": ("bb300cfdad3c16e7a12a480ee83cd310", "15d484375f8d13e6eb1aabb0c3f46965"),
}


def read_idx(path: Path, magic: int) -> tuple[np.ndarray, str]:
    """The uint8 array in an IDX file (gzipped or not), and the MD5 of its decompressed bytes."""
    data = _read_maybe_gzipped(path)
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetError(f"{path} is truncated: {len(data)} bytes, shorter than an IDX header")
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        raise DatasetError(f"{path} has magic number 0x{found:08x}, expected 0x{magic:08x}")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    expected = header + math.prod(dims)
    if len(data) != expected:
        raise DatasetError(
            f"{path} holds {len(data)} bytes but its header {dims} implies {expected}: truncated or damaged"
        )
    return np.frombuffer(data, np.uint8, offset=header).reshape(dims), md5_bytes(data)


def _read_maybe_gzipped(path: Path) -> bytes:
    """The file's bytes, decompressed when it starts with the gzip signature."""
    try:
        data = path.read_bytes()
        return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
    except (OSError, EOFError, zlib.error) as exc:
        raise DatasetError(f"{path} cannot be read: {exc}") from exc


def load_fashion_mnist(source: Path | None) -> SourceData:
    """Train and test images (N, 1, 28, 28) from `source`, else the system copy, else downloads/."""
    paths = _locate(Path(source)) if source is not None else _default_paths()
    info(f"Reading Fashion-MNIST from {paths['train-images-idx3-ubyte'].parent}")
    train_images, train_labels, train_md5 = _read_pair(paths, "train", TRAIN_PER_CLASS)
    test_images, test_labels, test_md5 = _read_pair(paths, "t10k", TEST_PER_CLASS)
    source_info = _source_info(paths, train_md5 | test_md5)
    return SourceData(train_images, train_labels, test_images, test_labels, list(CLASSES), source_info)


def _locate(folder: Path) -> dict[str, Path]:
    """Each IDX file in `folder`, as `name` or `name.gz`."""
    if not folder.is_dir():
        raise DatasetError(f"{folder} is not a folder; expected one holding {', '.join(FILES)} (or .gz)")
    paths = {}
    for name in FILES:
        candidates = [folder / name, folder / f"{name}.gz"]
        found = [path for path in candidates if path.is_file()]
        if not found:
            raise DatasetError(f"{folder} lacks {name} (or {name}.gz), one of the four Fashion-MNIST IDX files")
        paths[name] = found[0]
    return paths


def _default_paths() -> dict[str, Path]:
    """The system copy when installed, else the published .gz files from downloads/, fetched when absent."""
    if SYSTEM_DIR.is_dir():
        return _locate(SYSTEM_DIR)
    return {name: fetch(Resource(f"{name}.gz", f"{URL}{name}.gz", gz_md5)) for name, (gz_md5, _) in FILES.items()}


def _read_pair(paths: dict[str, Path], prefix: str, per_class: int) -> tuple[np.ndarray, np.ndarray, dict[str, str]]:
    """Images (N, 1, 28, 28) and int64 labels of one split, checked for shape, agreement and class counts."""
    images_path, labels_path = paths[f"{prefix}-images-idx3-ubyte"], paths[f"{prefix}-labels-idx1-ubyte"]
    images, images_md5 = read_idx(images_path, IMAGES_MAGIC)
    labels, labels_md5 = read_idx(labels_path, LABELS_MAGIC)
    if images.shape[1:] != (28, 28):
        raise DatasetError(f"{images_path} holds {images.shape[1]}x{images.shape[2]} images, expected 28x28")
    if len(images) != len(labels):
        raise DatasetError(f"{images_path} holds {len(images)} images but {labels_path} {len(labels)} labels")
    counts = np.bincount(labels, minlength=len(CLASSES))
    if len(counts) != len(CLASSES) or (counts != per_class).any():
        raise DatasetError(f"{labels_path}: expected {per_class} labels of each class 0-9, found {counts.tolist()}")
    digests = {f"{prefix}-images-idx3-ubyte": images_md5, f"{prefix}-labels-idx1-ubyte": labels_md5}
    return images[:, None].copy(), labels.astype(np.int64), digests


def _source_info(paths: dict[str, Path], digests: dict[str, str]) -> SourceInfo:
    """Checksums of the decompressed files; warns when they are not the official ones."""
    differ = [name for name, (_, raw_md5) in FILES.items() if digests[name] != raw_md5]
    if differ:
        warn(
            f"{', '.join(str(paths[name]) for name in differ)} differ from the official Fashion-MNIST files "
            "(MD5); the structure is valid, so they are used anyway"
        )
    folder = paths["train-images-idx3-ubyte"].parent
    return SourceInfo(name=folder.name, files=digests, verified=not differ)


@register_source("fashion_mnist")
def fashion_mnist() -> Source:
    """Fashion-MNIST-LT: 10 classes of 28x28 grey images, 6,000 training images per class before the long tail."""
    spec = DatasetSpec(
        name="fashion_mnist",
        num_classes=len(CLASSES),
        n_max=TRAIN_PER_CLASS,
        image_size=(1, 28, 28),
        mean=(0.2860,),
        std=(0.3530,),
        default_preset="fashion_mnist_lt",
        load_source=load_fashion_mnist,
    )
    return tensor_source(spec)
