"""The manifest.json of a prepared dataset directory: its schema, reader and writer."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from bagmar_cli.errors import DatasetError

FORMAT_VERSION = 3  # 2 added file-list splits (ListSplitInfo) and image_root; 3 added selection; 1 and 2 still load
MANIFEST_NAME = "manifest.json"
PRESET_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")  # a preset is named, never a path


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Counted(_Strict):
    """A split's size and per-class image counts, in label order."""

    n: NonNegativeInt  # number of images
    counts: list[NonNegativeInt]  # images per class, in label order; sums to n

    @model_validator(mode="after")
    def _counts_sum_to_n(self) -> _Counted:
        if sum(self.counts) != self.n:
            raise ValueError(f"counts sum to {sum(self.counts)}, not n = {self.n}")
        return self


def _plain_name(file: str) -> str:
    """`file` when it names a file inside the dataset directory; ValueError otherwise."""
    if not file or file in {".", ".."} or "/" in file or "\\" in file:
        raise ValueError(f"must be a file name inside the dataset directory, got {file!r}")
    return file


class SplitInfo(_Counted):
    """One split held as a tensor file (uint8 images and int64 labels)."""

    file: str  # file name inside the dataset directory, e.g. "train.safetensors"

    _file_name = field_validator("file")(_plain_name)


class ListSplitInfo(_Counted):
    """One split held as a list of image files (format_version 2): `relative/path label` per line."""

    list_file: str  # file name inside the dataset directory, e.g. "train.txt"; paths are under the image root
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]  # of the list file, to tell two splits apart

    _file_name = field_validator("list_file")(_plain_name)


def _split_kind(split: object) -> str:
    """Which kind of split a manifest entry describes: "list" when it names a list file, else "tensors"."""
    if isinstance(split, dict):
        return "list" if "list_file" in split else "tensors"
    return "list" if isinstance(split, ListSplitInfo) else "tensors"


AnySplit = Annotated[
    Annotated[SplitInfo, Tag("tensors")] | Annotated[ListSplitInfo, Tag("list")], Discriminator(_split_kind)
]


class SourceInfo(_Strict):
    """Where the images came from, with checksums, and whether those matched the official ones."""

    name: str  # archive, folder or package the images were read from
    md5: str | None = None  # MD5 of the archive file, when the source was one file
    sha256: str | None = None  # SHA-256 of the data, for sources without an archive (digits)
    files: dict[str, str] = {}  # MD5 of each data file's content (archive members, decompressed IDX files)
    verified: bool  # True when the data checksums equal the official ones


class Selection(_Strict):
    """Which training images the long tail kept (format_version 3), so two copies can be told apart."""

    subset: str  # "bagmar" (its own seeded draw) or "cao2019" (Cao et al.'s LDAM-DRW imbalance_cifar.py images)
    train_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]  # of the kept source indices (int64 LE, in order)


class Manifest(_Strict):
    """Everything a run needs to know about a prepared dataset, besides the images themselves."""

    format_version: PositiveInt  # FORMAT_VERSION when written; newer versions are refused
    dataset: str  # registry name, e.g. "cifar100"
    classes: list[str]  # class names in label order
    image_size: Annotated[list[PositiveInt], Field(min_length=3, max_length=3)]  # [C, H, W]
    mean: list[float]  # per channel, for images scaled to [0, 1]
    std: list[PositiveFloat]  # a 0 would divide by zero when images are normalised
    splits: dict[str, AnySplit]  # "train", "test", and "val" when there is one
    imb: float  # imbalance factor of the train split (largest / smallest class of the profile)
    profile: str  # long-tail profile: "exp" or "step"
    seed: int  # seed of the per-class image selection
    val_per_class: NonNegativeInt  # images per class held out of the training pool as "val"
    source: SourceInfo
    default_preset: str  # training preset that suits this dataset
    created_by: str  # "bagmar <version>"
    image_root: str | None = None  # version 2, file-list splits: their images' folder, absolute or relative to here
    reported_split: str | None = None  # version 2: the split results are reported on ("val" for iNaturalist 2018)
    # version 2, file-list splits: evaluation resizes the shorter side to eval_resize, then center-crops to
    # image_size; None: image_size * 256/224 (resize 256, crop 224, as ImageNet models are evaluated)
    eval_resize: PositiveInt | None = None
    selection: Selection | None = None  # version 3, in-memory datasets: the subset and its fingerprint
    # version 2, folders: the median [height, width] of the training images as stored, read at prepare time; it
    # chooses the training crop (`data.image_stats.is_small`); None: not read (benchmarks, older manifests)
    native_size: Annotated[list[PositiveInt], Field(min_length=2, max_length=2)] | None = None

    @property
    def num_classes(self) -> int:
        """The number of classes."""
        return len(self.classes)

    @field_validator("default_preset")
    @classmethod
    def _preset_name(cls, name: str) -> str:
        if not PRESET_NAME.fullmatch(name):
            raise ValueError(f"must be the name of a shipped preset (see `bagmar presets`), not a path; got {name!r}")
        return name

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        channels = self.image_size[0]
        if len(self.mean) != channels or len(self.std) != channels:
            raise ValueError(f"mean and std need {channels} values, one per channel")
        for name, split in self.splits.items():
            if len(split.counts) != self.num_classes:
                raise ValueError(f"split {name!r} has {len(split.counts)} counts for {self.num_classes} classes")
        if self.selection is not None and self.format_version < 3:
            raise ValueError("a selection record needs format_version 3")
        if self.file_lists and (self.format_version < 2 or not self.image_root):
            raise ValueError("file-list splits need format_version 2 and an image_root")
        if self.eval_resize is not None and self.eval_resize < min(self.image_size[1:]):
            raise ValueError(f"eval_resize {self.eval_resize} is smaller than the crop {self.image_size[1:]}")
        if self.reported_split is not None and self.reported_split not in self.splits:
            raise ValueError(f"reported_split {self.reported_split!r} is not one of the splits")
        return self

    @property
    def file_lists(self) -> list[str]:
        """The names of the splits held as image-file lists (none in version 1)."""
        return [name for name, split in self.splits.items() if isinstance(split, ListSplitInfo)]

    def images_dir(self, root: Path) -> Path:
        """The folder the file-list paths are relative to: image_root, resolved against the dataset directory."""
        if self.image_root is None:
            raise ValueError("this dataset has no image_root: its splits are tensor files")
        return Path(root) / self.image_root  # an absolute image_root replaces `root`


def write_manifest(root: Path, manifest: Manifest) -> None:
    """Write `manifest.json` into `root`, indented so that jq and diff read it well."""
    (root / MANIFEST_NAME).write_text(manifest.model_dump_json(indent=2) + "\n", encoding="utf-8")


def load_manifest(root: Path) -> Manifest:
    """Read and validate `root/manifest.json`."""
    path = Path(root) / MANIFEST_NAME
    if not path.is_file():
        raise DatasetError(f"{root} is not a prepared dataset directory: {path} is missing")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno})") from exc
    _check_version(path, raw)
    try:
        return Manifest.model_validate(raw)
    except ValidationError as exc:
        raise DatasetError(f"{path} does not match the manifest schema: {_first_error(exc)}") from exc


def _check_version(path: Path, raw: object) -> None:
    """Refuse manifests written by a newer bagmar before their fields are judged."""
    version = raw.get("format_version") if isinstance(raw, dict) else None
    if isinstance(version, int) and version > FORMAT_VERSION:
        raise DatasetError(
            f"{path} has format_version {version}, newer than this bagmar reads ({FORMAT_VERSION}); upgrade bagmar"
        )


def _first_error(exc: ValidationError) -> str:
    """The first validation error as `field.path: message`."""
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"]) or "manifest"
    return f"{where}: {error['msg']}"
