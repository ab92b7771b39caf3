"""CIFAR-10 and CIFAR-100 from the official python-version archives (or their extracted folders)."""

from __future__ import annotations

import tarfile
import zlib
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath

import numpy as np

from bagmar_cli.console import info, warn
from bagmar_cli.data.download import Resource, fetch, file_md5, md5_bytes
from bagmar_cli.data.manifest import SourceInfo
from bagmar_cli.data.sources.registry import Source, register_source
from bagmar_cli.data.sources.tensors import DatasetSpec, SourceData, tensor_source
from bagmar_cli.data.unpickle import restricted_loads
from bagmar_cli.errors import DatasetError

# Normalisation used by the CIFAR-LT literature (LDAM-DRW, BALMS and BaGMar's own code) for both datasets.
LT_MEAN = (0.4914, 0.4822, 0.4465)
LT_STD = (0.2023, 0.1994, 0.2010)
ROW_BYTES = 3 * 32 * 32


@dataclass(frozen=True)
class CifarLayout:
    """How one of the official archives is laid out, with the MD5 of each file it holds."""

    title: str
    archive: Resource
    folder: str  # the archive's top-level folder
    train_files: tuple[str, ...]
    test_file: str
    meta_file: str
    labels_key: bytes
    names_key: bytes
    num_classes: int
    train_per_class: int
    test_per_class: int
    file_md5: dict[str, str]  # official MD5 of each file (as torchvision checks them)

    @property
    def files(self) -> tuple[str, ...]:
        return (*self.train_files, self.test_file, self.meta_file)


CIFAR10 = CifarLayout(
    title="CIFAR-10",
    archive=Resource(
        "cifar-10-python.tar.gz",
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "c58f30108f718f92721af3b95e74349a",
    ),
    folder="cifar-10-batches-py",
    train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
    test_file="test_batch",
    meta_file="batches.meta",
    labels_key=b"labels",
    names_key=b"label_names",
    num_classes=10,
    train_per_class=5000,
    test_per_class=1000,
    file_md5={
        "data_batch_1": "c99cafc152244af753f735de768cd75f",
        "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
        "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
        "data_batch_4": "634d18415352ddfa80567beed471001a",
        "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
        "test_batch": "40351d587109b95175f43aff81a1287e",
        "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
    },
)

CIFAR100 = CifarLayout(
    title="CIFAR-100",
    archive=Resource(
        "cifar-100-python.tar.gz",
        "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        "eb9058c3a382ffc7106e4002c42a8d85",
    ),
    folder="cifar-100-python",
    train_files=("train",),
    test_file="test",
    meta_file="meta",
    labels_key=b"fine_labels",
    names_key=b"fine_label_names",
    num_classes=100,
    train_per_class=500,
    test_per_class=100,
    file_md5={
        "train": "16019d7e3df5f24257cddd939b257f8d",
        "test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
        "meta": "7973b15100ade9c7d40fb424638fde48",
    },
)


def load_cifar(layout: CifarLayout, source: Path | None) -> SourceData:
    """Read, check and return one CIFAR dataset; `source` None: the archive in downloads/, fetched if absent."""
    path = Path(source) if source is not None else fetch(layout.archive)
    info(f"Reading {layout.title} from {path}")
    files = _read_files(layout, path)
    digests = {name: md5_bytes(data) for name, data in files.items()}
    train = [_parse_batch(layout, path, name, files.pop(name)) for name in layout.train_files]
    test_images, test_labels = _parse_batch(layout, path, layout.test_file, files.pop(layout.test_file))
    train_images = np.concatenate([images for images, _ in train])
    train_labels = np.concatenate([labels for _, labels in train])
    _check_counts(layout, path, "training", train_labels, layout.train_per_class)
    _check_counts(layout, path, "test", test_labels, layout.test_per_class)
    classes = _parse_classes(layout, path, files.pop(layout.meta_file))
    return SourceData(
        train_images, train_labels, test_images, test_labels, classes, _source_info(layout, path, digests)
    )


def _read_files(layout: CifarLayout, path: Path) -> dict[str, bytes]:
    """The layout's files as bytes, from an archive or from an extracted folder (or its parent)."""
    if path.is_dir():
        folder = path / layout.folder if (path / layout.folder).is_dir() else path
        missing = [name for name in layout.files if not (folder / name).is_file()]
        if missing:
            raise DatasetError(f"{folder} lacks {', '.join(missing)}; expected the official {layout.folder}/ folder")
        return {name: (folder / name).read_bytes() for name in layout.files}
    if not path.is_file():
        raise DatasetError(f"{path} does not exist; expected {layout.archive.filename} or its {layout.folder}/ folder")
    return _read_archive(layout, path)


def _read_archive(layout: CifarLayout, path: Path) -> dict[str, bytes]:
    """Read the layout's members in one pass over the tar stream, refusing unsafe member paths."""
    wanted = {f"{layout.folder}/{name}": name for name in layout.files}
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                name = _safe_member_name(path, member.name)
                handle = tar.extractfile(member) if name in wanted and member.isfile() else None
                if handle is not None:
                    found[wanted[name]] = handle.read()
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise DatasetError(f"{path} is not a readable tar archive ({exc})") from exc
    missing = [member for member, name in wanted.items() if name not in found]
    if missing:
        raise DatasetError(f"{path} lacks {', '.join(missing)}; expected the official {layout.archive.filename}")
    return found


def _safe_member_name(path: Path, name: str) -> str:
    """The member's normalised path; DatasetError for absolute paths or '..' components."""
    member = PurePosixPath(name)
    if member.is_absolute() or ".." in member.parts:
        raise DatasetError(f"{path} holds a member with an unsafe path {name!r}; refusing the archive")
    return str(member)


def _parse_batch(layout: CifarLayout, path: Path, name: str, raw: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 3, 32, 32) uint8 and int64 labels of one pickled batch, after checking its structure."""
    batch = _unpickle(path, name, raw)
    if not isinstance(batch, dict) or b"data" not in batch or layout.labels_key not in batch:
        raise DatasetError(f"{path}: {name} is not a CIFAR batch (a dict with b'data' and {layout.labels_key!r})")
    data, labels = batch[b"data"], np.asarray(batch[layout.labels_key])
    rows = _rows(layout, name)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.shape != (rows, ROW_BYTES):
        shape = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DatasetError(f"{path}: {name} data is {shape}, expected uint8 ({rows}, {ROW_BYTES})")
    if labels.shape != (rows,) or labels.dtype.kind not in "iu":
        raise DatasetError(
            f"{path}: {name} has {labels.dtype} labels of shape {labels.shape}, expected {rows} integers"
        )
    return data.reshape(rows, 3, 32, 32), labels.astype(np.int64)


def _rows(layout: CifarLayout, name: str) -> int:
    """Images in one file: 10,000 per test file and per CIFAR-10 batch, 50,000 in CIFAR-100's train file."""
    if name == layout.test_file:
        return layout.num_classes * layout.test_per_class
    return layout.num_classes * layout.train_per_class // len(layout.train_files)


def _check_counts(layout: CifarLayout, path: Path, what: str, labels: np.ndarray, per_class: int) -> None:
    """DatasetError unless every label is a class index and each class has `per_class` images."""
    if labels.min() < 0 or labels.max() >= layout.num_classes:
        raise DatasetError(f"{path}: {what} labels outside [0, {layout.num_classes})")
    counts = np.bincount(labels, minlength=layout.num_classes)
    if (counts != per_class).any():
        raise DatasetError(f"{path}: {what} classes hold {counts.min()} to {counts.max()} images, expected {per_class}")


def _parse_classes(layout: CifarLayout, path: Path, raw: bytes) -> list[str]:
    """Class names in label order from the meta file."""
    meta = _unpickle(path, layout.meta_file, raw)
    names = meta.get(layout.names_key) if isinstance(meta, dict) else None
    if (
        not isinstance(names, list)
        or len(names) != layout.num_classes
        or not all(isinstance(n, (bytes, str)) for n in names)
    ):
        raise DatasetError(f"{path}: {layout.meta_file} lacks {layout.num_classes} {layout.names_key!r}")
    return [n.decode("utf-8") if isinstance(n, bytes) else n for n in names]


def _unpickle(path: Path, name: str, raw: bytes) -> object:
    """restricted_loads, with the archive and file named in its errors."""
    try:
        return restricted_loads(raw)
    except DatasetError as exc:
        raise DatasetError(f"{path}: {name}: {exc}") from exc


def _source_info(layout: CifarLayout, path: Path, digests: dict[str, str]) -> SourceInfo:
    """Checksums of the source; warns when its files are not the official ones."""
    verified = digests == layout.file_md5
    if not verified:
        differ = [name for name in layout.files if digests[name] != layout.file_md5[name]]
        warn(
            f"{path}: {', '.join(differ)} differ from the official {layout.title} files (MD5); "
            "the structure is valid, so it is used anyway"
        )
    md5 = file_md5(path) if path.is_file() else None
    return SourceInfo(name=path.name, md5=md5, files=digests, verified=verified)


def _cifar_spec(name: str, layout: CifarLayout, preset: str) -> DatasetSpec:
    return DatasetSpec(
        name=name,
        num_classes=layout.num_classes,
        n_max=layout.train_per_class,
        image_size=(3, 32, 32),
        mean=LT_MEAN,
        std=LT_STD,
        default_preset=preset,
        load_source=partial(load_cifar, layout),
    )


@register_source("cifar10")
def cifar10() -> Source:
    """CIFAR-10-LT: 10 classes, 5,000 training images per class before the long tail."""
    return tensor_source(_cifar_spec("cifar10", CIFAR10, "cifar10_lt"))


@register_source("cifar100")
def cifar100() -> Source:
    """CIFAR-100-LT: 100 classes, 500 training images per class before the long tail."""
    return tensor_source(_cifar_spec("cifar100", CIFAR100, "cifar100_lt"))
