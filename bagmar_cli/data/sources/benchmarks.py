"""The large-scale benchmarks read from image files (imagenet_lt, inat2018, places_lt): their official split lists,
sizes and expected layouts, and their prepare step, which writes the official lists as they are (kind FILES)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bagmar_cli.console import note, warn
from bagmar_cli.data.download import Resource, downloads_dir, fetch
from bagmar_cli.data.filelists import FileList, check_every_class, parse_list
from bagmar_cli.data.manifest import SourceInfo
from bagmar_cli.data.sources.options import BENCHMARK_OPTIONS, PrepareOptions
from bagmar_cli.data.sources.registry import FILES, Source, register_source
from bagmar_cli.data.store.lists import AS_LISTED, ListPlan, class_names, copier, write_plan
from bagmar_cli.data.store.paths import data_root
from bagmar_cli.data.store.staging import check_writable
from bagmar_cli.data.verify import check_root, verify_images
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
    layout: dict[str, str]  # split -> where its images are expected under `root`
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
    """The benchmark called `name`; SettingError when there is none (`get_source` suggests close names first)."""
    if name not in BENCHMARKS:
        raise SettingError(f"unknown benchmark {name!r}; choose from {', '.join(benchmark_names())}")
    return BENCHMARKS[name]


def locate_lists(bench: Benchmark, splits_dir: Path | None) -> dict[str, Path]:
    """The official list file of each split: from `splits_dir`, else from downloads/ (downloaded when absent)."""
    if splits_dir is not None:
        return _from_folder(bench, Path(splits_dir))
    hint = (
        f"the {bench.title} lists are {', '.join(bench.lists.values())}: download them from "
        f"{LISTS_URL}/{bench.folder}/ on a machine with internet access and pass their folder as `splits` DIR "
        f"(or put them in {downloads_dir()})"
    )
    return {split: fetch(Resource(file, bench.url(split), None), hint) for split, file in bench.lists.items()}


def _from_folder(bench: Benchmark, folder: Path) -> dict[str, Path]:
    """Each official list file in `folder`; DatasetError naming the ones that are absent."""
    if not folder.is_dir():
        raise DatasetError(f"`splits` {folder} is not a folder; it must hold {', '.join(bench.lists.values())}")
    missing = [file for file in bench.lists.values() if not (folder / file).is_file()]
    if missing:
        raise DatasetError(
            f"`splits` {folder} lacks {', '.join(missing)}; the {bench.title} lists are published at "
            f"{LISTS_URL}/{bench.folder}/"
        )
    return {split: folder / file for split, file in bench.lists.items()}


def benchmark_source(bench: Benchmark) -> Source:
    """The registry entry of a benchmark: kind FILES, its lists under `root`, prepared by `prepare_benchmark`."""

    def prepare(options: PrepareOptions) -> Path:
        assert options.root is not None  # check_options refuses a FILES source without `root`
        return prepare_benchmark(
            bench.name, root=options.root, splits_dir=options.splits, out=options.out, verify=options.verify,
            overwrite=options.overwrite,
        )  # fmt: skip

    return Source(name=bench.name, kind=FILES, accepts=BENCHMARK_OPTIONS, prepare=prepare)


@register_source("imagenet_lt")
def imagenet_lt() -> Source:
    """ImageNet-LT (Liu et al. 2019): 1,000 classes, lists of ImageNet 2012's images."""
    return benchmark_source(BENCHMARKS["imagenet_lt"])


@register_source("inat2018")
def inat2018() -> Source:
    """iNaturalist 2018: 8,142 naturally long-tailed classes; results are reported on its val split."""
    return benchmark_source(BENCHMARKS["inat2018"])


@register_source("places_lt")
def places_lt() -> Source:
    """Places-LT (Liu et al. 2019): 365 classes, lists of Places365-Standard's images."""
    return benchmark_source(BENCHMARKS["places_lt"])


def prepare_benchmark(
    name: str,
    *,
    root: Path,
    splits_dir: Path | None = None,
    out: Path | None = None,
    verify: bool = True,
    overwrite: bool = False,
) -> Path:
    """Write the dataset directory of benchmark `name` from its official lists, images under `root`."""
    bench = get_benchmark(name)
    out = Path(out) if out is not None else data_root() / name
    check_writable(out, overwrite)
    check_root(root)
    paths = locate_lists(bench, splits_dir)
    lists = {split: parse_list(path, bench.num_classes) for split, path in paths.items()}
    check_every_class(lists["train"].counts(bench.num_classes), paths["train"])
    official = _check_sizes(bench, lists)
    if verify:
        for split, files in lists.items():
            verify_images(root, files.paths, bench.lists[split], bench.layout[split])
    if bench.reported_split != "test":
        note(f"{bench.title} has no test split: {bench.reported_split} is the split its results are reported on")
    writers = {split: (lists[split], path.name, copier(path)) for split, path in paths.items()}
    counts = lists["train"].counts(bench.num_classes)
    plan = ListPlan(
        dataset=name,
        classes=class_names(lists["train"], bench.num_classes),
        lists=writers,
        image_root=Path(root),
        imb=max(counts) / min(counts),
        profile=AS_LISTED,
        seed=0,
        val_per_class=0,
        source=SourceInfo(name=bench.folder, verified=official),
        default_preset=bench.default_preset,
        reported_split=bench.reported_split,
        mean=list(IMAGENET_MEAN),
        std=list(IMAGENET_STD),
    )
    return write_plan(plan, out, overwrite)


def _check_sizes(bench: Benchmark, lists: dict[str, FileList]) -> bool:
    """Whether every list has its official size; warns for each that does not."""
    official = True
    for split, files in lists.items():
        if len(files.paths) != bench.sizes[split]:
            warn(f"{bench.lists[split]} lists {len(files.paths)} images; the official list has {bench.sizes[split]}")
            official = False
    return official
