"""The large-scale benchmarks read from image files: their official split lists, sizes and expected layouts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bagmar_cli.data.download import Resource, downloads_dir, fetch
from bagmar_cli.errors import DatasetError, SettingError

# The lists as the decoupling project (facebookresearch/classifier-balancing) publishes them, one folder per
# benchmark; they are the OLTR lists (github.com/zhmiao/OpenLongTailRecognition-OLTR) under the same names.
LISTS_URL = "https://raw.githubusercontent.com/facebookresearch/classifier-balancing/main/data"
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Benchmark:
    """A long-tailed benchmark whose splits are official lists of image files."""

    name: str  # registry name, e.g. "imagenet_lt"
    title: str  # as papers write it, e.g. "ImageNet-LT"
    num_classes: int
    folder: str  # the lists' folder under LISTS_URL
    lists: dict[str, str]  # split -> official list file name
    sizes: dict[str, int]  # split -> images the official list holds
    reported_split: str  # the split papers report: "test", or "val" where there is no test split
    layout: dict[str, str]  # split -> where its images are expected under --root
    default_preset: str  # the recipe that trains on it

    def url(self, split: str) -> str:
        """Where the official list of `split` is downloaded from."""
        return f"{LISTS_URL}/{self.folder}/{self.lists[split]}"


BENCHMARKS: dict[str, Benchmark] = {
    "imagenet_lt": Benchmark(
        name="imagenet_lt",
        title="ImageNet-LT",
        num_classes=1000,
        folder="ImageNet_LT",
        lists={"train": "ImageNet_LT_train.txt", "val": "ImageNet_LT_val.txt", "test": "ImageNet_LT_test.txt"},
        sizes={"train": 115_846, "val": 20_000, "test": 50_000},
        reported_split="test",
        layout={
            "train": "ROOT/train/<wnid>/<wnid>_*.JPEG (ImageNet 2012's training images)",
            "val": "ROOT/train/<wnid>/<wnid>_*.JPEG (ImageNet-LT's val images come from ImageNet's training set)",
            "test": "ROOT/val/<wnid>/ILSVRC2012_val_*.JPEG (ImageNet 2012's validation images sorted into one "
            "folder per class, as ImageNet's valprep.sh does: the flat val/ folder of the archive does not match)",
        },
        default_preset="imagenet_lt",
    ),
    "inat2018": Benchmark(
        name="inat2018",
        title="iNaturalist 2018",
        num_classes=8142,
        folder="iNaturalist18",
        lists={"train": "iNaturalist18_train.txt", "val": "iNaturalist18_val.txt"},
        sizes={"train": 437_513, "val": 24_426},
        reported_split="val",
        layout={
            "train": "ROOT/train_val2018/<supercategory>/<category id>/*.jpg (train_val2018.tar.gz unpacked)",
            "val": "ROOT/train_val2018/<supercategory>/<category id>/*.jpg (train_val2018.tar.gz unpacked)",
        },
        default_preset="inat2018",
    ),
    "places_lt": Benchmark(
        name="places_lt",
        title="Places-LT",
        num_classes=365,
        folder="Places_LT",
        lists={"train": "Places_LT_train.txt", "val": "Places_LT_val.txt", "test": "Places_LT_test.txt"},
        sizes={"train": 62_500, "val": 7_300, "test": 36_500},
        reported_split="test",
        layout={
            "train": "ROOT/train/<category>/*.jpg (Places365-Standard's training images, one folder per category)",
            "val": "ROOT/train/<category>/*.jpg (Places-LT's val images come from Places365's training set)",
            "test": "ROOT/val/<category>/Places365_val_*.jpg (Places365's validation images sorted into one "
            "folder per category)",
        },
        default_preset="places_lt",
    ),
}


def benchmark_names() -> list[str]:
    """The benchmarks read from image files, sorted."""
    return sorted(BENCHMARKS)


def get_benchmark(name: str) -> Benchmark:
    """The benchmark called `name`; SettingError when there is none (`prepare_any` suggests close names first)."""
    if name not in BENCHMARKS:
        raise SettingError(f"unknown benchmark {name!r}; choose from {', '.join(benchmark_names())}")
    return BENCHMARKS[name]


def locate_lists(bench: Benchmark, splits_dir: Path | None) -> dict[str, Path]:
    """The official list file of each split: from `splits_dir`, else from downloads/ (downloaded when absent)."""
    if splits_dir is not None:
        return _from_folder(bench, Path(splits_dir))
    hint = (
        f"the {bench.title} lists are {', '.join(bench.lists.values())}: download them from "
        f"{LISTS_URL}/{bench.folder}/ on a machine with internet access and pass their folder with --splits DIR "
        f"(or put them in {downloads_dir()})"
    )
    return {split: fetch(Resource(file, bench.url(split), None), hint) for split, file in bench.lists.items()}


def _from_folder(bench: Benchmark, folder: Path) -> dict[str, Path]:
    """Each official list file in `folder`; DatasetError naming the ones that are absent."""
    if not folder.is_dir():
        raise DatasetError(f"--splits {folder} is not a folder; it must hold {', '.join(bench.lists.values())}")
    missing = [file for file in bench.lists.values() if not (folder / file).is_file()]
    if missing:
        raise DatasetError(
            f"--splits {folder} lacks {', '.join(missing)}; the {bench.title} lists are published at "
            f"{LISTS_URL}/{bench.folder}/"
        )
    return {split: folder / file for split, file in bench.lists.items()}
