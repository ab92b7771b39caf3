"""CIFAR-10/100-LT from generated archives in the official layout: exact counts, determinism, checks."""

import dataclasses
import hashlib
import pickle
import urllib.error

import numpy as np
import pytest

from bagmar_cli.data import load_manifest, load_split, lt_counts, prepare_dataset
from bagmar_cli.data.download import file_md5
from bagmar_cli.data.sources.cifar import CIFAR10, CIFAR100, LT_MEAN, LT_STD, load_cifar
from bagmar_cli.data.sources.registry import get_dataset
from bagmar_cli.data.sources.tensors import draw_splits
from bagmar_cli.errors import DatasetError, DownloadError, SettingError

TINY = dataclasses.replace(CIFAR10, train_per_class=10, test_per_class=2)  # 100 training images in 5 batches


@pytest.mark.parametrize(("imb", "total"), [(100, 10_847), (50, 12_608), (10, 19_573), (200, 9_502)])
def test_cifar100_lt_counts_are_the_standard_ones(cifar100_archive, tmp_path, imb, total):
    root = prepare_dataset("cifar100", imb=imb, source=cifar100_archive, out=tmp_path / "ds")
    manifest = load_manifest(root)
    assert manifest.splits["train"].n == total
    assert manifest.splits["train"].counts == lt_counts(500, 100, imb, "exp")
    assert manifest.splits["test"].counts == [100] * 100 and "val" not in manifest.splits
    images, labels = load_split(root, "test")
    assert images.shape == (10_000, 3, 32, 32) and labels.shape == (10_000,)


@pytest.mark.parametrize(("imb", "total"), [(100, 12_406), (10, 20_431)])
def test_cifar10_lt_counts_are_the_standard_ones(cifar10_archive, tmp_path, imb, total):
    root = prepare_dataset("cifar10", imb=imb, source=cifar10_archive, out=tmp_path / "ds")
    images, labels = load_split(root, "train")
    assert len(labels) == total and images.shape[1:] == (3, 32, 32)
    assert np.bincount(labels.numpy()).tolist() == lt_counts(5000, 10, imb, "exp")
    assert len(load_split(root, "test")[1]) == 10_000


def test_manifest_describes_the_source(cifar10_archive, tmp_path, capsys):
    manifest = load_manifest(prepare_dataset("cifar10", source=cifar10_archive, out=tmp_path / "ds"))
    assert (manifest.dataset, manifest.default_preset, manifest.image_size) == ("cifar10", "cifar10_lt", [3, 32, 32])
    assert manifest.mean == list(LT_MEAN) and manifest.std == list(LT_STD)
    assert manifest.classes == [f"class{c}" for c in range(10)]
    assert (manifest.imb, manifest.profile, manifest.seed, manifest.val_per_class) == (100.0, "exp", 0, 0)
    assert manifest.source.name == CIFAR10.archive.filename and manifest.source.md5 == file_md5(cifar10_archive)
    assert not manifest.source.verified and "differ from the official CIFAR-10 files" in capsys.readouterr().err


def test_selection_is_deterministic_per_seed(cifar100_archive, helpers):
    spec, data = get_dataset("cifar100"), load_cifar(CIFAR100, cifar100_archive)
    ids = {seed: helpers.image_ids(draw_splits(spec, data, 100, "exp", seed, 0)["train"][0]) for seed in (0, 0, 1)}
    again = helpers.image_ids(draw_splits(spec, data, 100, "exp", 0, 0)["train"][0])
    assert np.array_equal(ids[0], again)
    assert not np.array_equal(ids[0], ids[1])
    assert len(set(ids[0])) == len(ids[0]) == 10_847


def test_test_split_is_the_official_test_set(cifar10_archive, tmp_path, helpers):
    root = prepare_dataset("cifar10", imb=10, seed=3, source=cifar10_archive, out=tmp_path / "ds")
    images, labels = load_split(root, "test")
    assert np.array_equal(helpers.image_ids(images), np.arange(10_000))
    assert np.array_equal(labels.numpy(), np.arange(10_000) % 10)


def test_val_split_comes_out_of_the_training_pool(cifar100_archive, tmp_path, helpers):
    root = prepare_dataset("cifar100", val_per_class=50, source=cifar100_archive, out=tmp_path / "ds")
    manifest = load_manifest(root)
    expected = [min(n, 450) for n in lt_counts(500, 100, 100, "exp")]
    assert manifest.splits["train"].counts == expected and expected[:4] == [450, 450, 450, 434]
    assert manifest.splits["val"].counts == [50] * 100 and manifest.splits["test"].n == 10_000
    train_ids, val_ids = (helpers.image_ids(load_split(root, split)[0]) for split in ("train", "val"))
    assert not set(train_ids) & set(val_ids)


def test_step_profile(cifar10_archive, tmp_path):
    root = prepare_dataset("cifar10", imb=10, profile="step", source=cifar10_archive, out=tmp_path / "ds")
    assert load_manifest(root).splits["train"].counts == [5000] * 5 + [500] * 5


def test_extracted_folder_reads_like_the_archive(tmp_path, helpers):
    members = helpers.cifar_members(TINY)
    archive = helpers.write_tar(tmp_path / "a.tar.gz", {f"{TINY.folder}/{n}": d for n, d in members.items()})
    folder = tmp_path / "parent" / TINY.folder
    folder.mkdir(parents=True)
    for name, data in members.items():
        (folder / name).write_bytes(data)
    from_archive = load_cifar(TINY, archive)
    for source in (folder, folder.parent):
        from_folder = load_cifar(TINY, source)
        assert all(np.array_equal(a, b) for a, b in zip(from_archive[:4], from_folder[:4], strict=True))
        assert from_folder.source.md5 is None and from_folder.source.files == from_archive.source.files


def test_files_with_the_official_checksums_verify(tmp_path, helpers):
    members = helpers.cifar_members(TINY)
    layout = dataclasses.replace(TINY, file_md5={name: hashlib.md5(data).hexdigest() for name, data in members.items()})
    archive = helpers.write_tar(tmp_path / "a.tar.gz", {f"{TINY.folder}/{n}": d for n, d in members.items()})
    assert load_cifar(layout, archive).source.verified


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(row_bytes=3000), r"data is uint8 \(20, 3000\), expected uint8 \(20, 3072\)"),
        (dict(labels=lambda n: [0] * n), "training classes hold 0 to 100 images, expected 10"),
        (dict(labels=lambda n: [10] * n), r"labels outside \[0, 10\)"),
        (dict(drop="test_batch"), "lacks cifar-10-batches-py/test_batch"),
    ],
)
def test_archives_with_the_wrong_structure_are_rejected(tmp_path, helpers, change, message):
    members = helpers.cifar_members(TINY, row_bytes=change.get("row_bytes", 3072))
    if "labels" in change:
        for name in TINY.train_files:
            batch = pickle.loads(members[name], encoding="bytes")  # our own generated test pickle
            batch[TINY.labels_key] = change["labels"](len(batch[TINY.labels_key]))
            members[name] = helpers.py2_dumps(batch)
    members.pop(change.get("drop"), None)
    archive = helpers.write_tar(tmp_path / "a.tar.gz", {f"{TINY.folder}/{n}": d for n, d in members.items()})
    with pytest.raises(DatasetError, match=message):
        load_cifar(TINY, archive)


@pytest.mark.parametrize("name", ["/etc/data_batch_1", "cifar-10-batches-py/../../data_batch_1"])
def test_unsafe_member_paths_are_refused(tmp_path, helpers, name):
    members = {f"{TINY.folder}/{n}": d for n, d in helpers.cifar_members(TINY).items()}
    archive = helpers.write_tar(tmp_path / "a.tar.gz", {name: b"x", **members})
    with pytest.raises(DatasetError, match="unsafe path"):
        load_cifar(TINY, archive)


def test_code_in_an_archive_pickle_is_refused(tmp_path, helpers):
    marker = tmp_path / "pwned"
    members = {f"{TINY.folder}/{n}": d for n, d in helpers.cifar_members(TINY).items()}
    members[f"{TINY.folder}/batches.meta"] = b"cos\nsystem\n(V touch " + str(marker).encode() + b"\ntR."
    with pytest.raises(DatasetError, match=r"batches.meta: .*refuses to load it"):
        load_cifar(TINY, helpers.write_tar(tmp_path / "a.tar.gz", members))
    assert not marker.exists()


def test_not_an_archive_is_a_dataset_error(tmp_path):
    bogus = tmp_path / "cifar-10-python.tar.gz"
    bogus.write_bytes(b"not a tar file at all")
    with pytest.raises(DatasetError, match="not a readable tar archive"):
        load_cifar(TINY, bogus)


def test_archive_in_downloads_is_used_without_network(cifar10_archive, tmp_path, monkeypatch):
    (tmp_path / "downloads").mkdir()
    (tmp_path / "downloads" / CIFAR10.archive.filename).symlink_to(cifar10_archive)
    monkeypatch.setenv("BAGMAR_DATA_DIR", str(tmp_path))
    monkeypatch.setattr("bagmar_cli.data.download.urlopen", _offline)
    root = prepare_dataset("cifar10", imb=10)
    assert root == tmp_path / "cifar10-lt-imb10" and load_manifest(root).splits["train"].n == 20_431


def test_offline_without_source_fails_fast_with_a_hint(tmp_path, monkeypatch):
    monkeypatch.setenv("BAGMAR_DATA_DIR", str(tmp_path))
    monkeypatch.setattr("bagmar_cli.data.download.urlopen", _offline)
    with pytest.raises(DownloadError, match=r"could not download https://www.cs.toronto.edu/.*`source`"):
        prepare_dataset("cifar100")
    assert list((tmp_path / "downloads").iterdir()) == [] and not (tmp_path / "cifar100-lt-imb100").exists()


def _offline(url, timeout):
    raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")


def _cao2019_reference(targets: np.ndarray, num_classes: int, imb: float, rand_number: int) -> np.ndarray:
    """Cao et al.'s IMBALANCECIFAR10 (LDAM-DRW imbalance_cifar.py), written out again: its indices, in its order."""
    img_max = len(targets) / num_classes
    img_num_per_cls = [int(img_max * ((1 / imb) ** (i / (num_classes - 1.0)))) for i in range(num_classes)]
    state = np.random.get_state()
    try:
        np.random.seed(rand_number)
        kept = []
        for the_class, the_img_num in zip(np.unique(targets), img_num_per_cls, strict=True):
            idx = np.where(targets == the_class)[0]
            np.random.shuffle(idx)
            kept.append(idx[:the_img_num])
    finally:
        np.random.set_state(state)
    return np.concatenate(kept)


@pytest.mark.parametrize(
    ("name", "archive", "imb", "seed"),
    [
        ("cifar10", "cifar10_archive", 100, 0),
        ("cifar100", "cifar100_archive", 50, 0),
        ("cifar100", "cifar100_archive", 100, 3),
    ],
)
def test_cao2019_keeps_exactly_caos_images(request, tmp_path, helpers, name, archive, imb, seed):
    source = request.getfixturevalue(archive)
    root = prepare_dataset(name, imb=imb, seed=seed, subset="cao2019", source=source, out=tmp_path / "ds")
    layout = CIFAR10 if name == "cifar10" else CIFAR100
    targets = np.arange(layout.num_classes * layout.train_per_class) % layout.num_classes  # the archives' labels
    expected = _cao2019_reference(targets, layout.num_classes, imb, seed)
    images, labels = load_split(root, "train")
    assert np.array_equal(helpers.image_ids(images), expected)
    assert np.array_equal(labels.numpy(), targets[expected])
    selection = load_manifest(root).selection
    assert selection.subset == "cao2019"
    assert selection.train_sha256 == hashlib.sha256(expected.astype("<i8").tobytes()).hexdigest()


def test_the_fingerprint_tells_the_subsets_apart(cifar10_archive, tmp_path, helpers):
    ours = prepare_dataset("cifar10", source=cifar10_archive, out=tmp_path / "ours")
    cao = prepare_dataset("cifar10", subset="cao2019", source=cifar10_archive, out=tmp_path / "cao")
    ours_ids, cao_ids = (helpers.image_ids(load_split(root, "train")[0]) for root in (ours, cao))
    assert load_manifest(ours).splits["train"].counts == load_manifest(cao).splits["train"].counts
    assert not np.array_equal(np.sort(ours_ids), np.sort(cao_ids))
    fingerprints = {load_manifest(root).selection.train_sha256 for root in (ours, cao)}
    assert len(fingerprints) == 2
    assert load_manifest(ours).selection.subset == "bagmar"
    assert load_manifest(ours).selection.train_sha256 == hashlib.sha256(ours_ids.astype("<i8").tobytes()).hexdigest()


@pytest.mark.parametrize(
    ("dataset", "options", "message"),
    [
        ("digits", {}, "applies to cifar10 and cifar100, not digits"),
        ("cifar10", {"val_per_class": 10}, "takes no val split"),
    ],
)
def test_cao2019_refuses_what_caos_code_does_not_do(tmp_path, dataset, options, message):
    with pytest.raises(SettingError, match=message):
        prepare_dataset(dataset, subset="cao2019", out=tmp_path / "ds", **options)
