"""Bad input through the real CLI: one `Error:` line naming the thing and what was expected, exit 2 for
usage and 1 otherwise, no traceback, and no user file changed.
"""

from __future__ import annotations

import errno
import gzip
import io
import json
import os
import pickle
import random
import shutil
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save, save_file
from support.bad_input import assert_one_error_line, expand, snapshot

from bagmar_cli import files
from bagmar_cli.data.sources.cifar import CIFAR10
from bagmar_cli.data.sources.fashion_mnist import FILES as FASHION_FILES


class RunsCode:
    """Unpickling this runs `touch MARKER`; a loader that never unpickles leaves no marker."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _cifar10(path: Path, data_batch_1: bytes) -> Path:
    """A CIFAR-10 archive whose first batch is `data_batch_1`; the members after it are never parsed."""
    members = dict.fromkeys(CIFAR10.files, b"unused") | {"data_batch_1": data_batch_1}
    return _tar(path, {f"{CIFAR10.folder}/{name}": data for name, data in members.items()})


def _batch(data: np.ndarray, labels: object) -> bytes:
    return pickle.dumps({b"data": data, b"labels": labels}, protocol=2)


def _with_metadata(source: Path, target: Path, **changes: str) -> Path:
    """A copy of a checkpoint with some raw (JSON-encoded) metadata values replaced."""
    with safe_open(str(source), framework="pt") as handle:
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 -- a safetensors handle is not a dict: it cannot be iterated
        metadata = handle.metadata() | changes
    target.write_bytes(save(tensors, metadata=metadata))
    return target


def _copy_dataset(source: Path, target: Path) -> Path:
    return Path(shutil.copytree(source, target))


def _edit_manifest(root: Path, edit) -> Path:
    manifest = json.loads((root / "manifest.json").read_text())
    edit(manifest)
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def _swap_two_counts(manifest: dict) -> None:
    counts = manifest["splits"]["train"]["counts"]
    counts[0], counts[-1] = counts[-1], counts[0]


def _zero_std(manifest: dict) -> None:
    manifest["std"] = [0.0] * len(manifest["std"])


def _five_classes(manifest: dict) -> None:
    manifest["classes"] = manifest["classes"][:5]
    for split in manifest["splits"].values():
        split["counts"] = [*split["counts"][:4], sum(split["counts"][4:])]


def _label_out_of_range(root: Path) -> Path:
    path = root / "train.safetensors"
    with safe_open(str(path), framework="pt") as handle:
        images, labels = handle.get_tensor("images"), handle.get_tensor("labels").clone()
    labels[0] = 10
    path.write_bytes(save({"images": images, "labels": labels}))
    return root


@pytest.fixture(scope="module")
def paths(tmp_path_factory, digits_data: Path, digits_run: Path) -> dict[str, Path]:
    """Every bad file and directory the matrix names, made once; `{name}` in a case is replaced by its path."""
    bad = tmp_path_factory.mktemp("bad")
    good = digits_run.parent / "last.safetensors"
    rng = random.Random(0)
    marker = bad / "pickle-ran"
    files: dict[str, Path] = {
        "data": digits_data,
        "ckpt": digits_run,
        "run": digits_run.parent,
        "bad": bad,
        "marker": marker,
    }

    def write(name: str, content: bytes | str) -> Path:
        path = bad / name
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        files[name.split(".", maxsplit=1)[0]] = path
        return path

    write("empty.safetensors", b"")
    write("random.safetensors", rng.randbytes(4096))
    write("truncated.safetensors", good.read_bytes()[: good.stat().st_size // 2])
    write("pickle.safetensors", pickle.dumps({"model.w": RunsCode(marker)}))
    save_file({"w": torch.zeros(2)}, str(bad / "foreign.safetensors"))
    save_file({"w": torch.zeros(2)}, str(bad / "hf.safetensors"), metadata={"format": "pt"})
    files["foreign"], files["hf"] = bad / "foreign.safetensors", bad / "hf.safetensors"
    files["newer"] = _with_metadata(good, bad / "newer.safetensors", format_version="2")
    write("a_file", "not a directory")
    write("not_toml.toml", "[train\nepochs = 3\n")
    write("unknown_key.toml", "[optim]\nmomentun = 0.9\n")
    write("wrong_type.toml", "[train]\nbatch_size = 'large'\n")
    write("wrong_section.toml", "train = 3\n")
    (bad / "preset_dir.toml").mkdir()
    files["preset_dir"] = bad / "preset_dir.toml"

    files["no_manifest"] = _copy_dataset(digits_data, bad / "no_manifest")
    (files["no_manifest"] / "manifest.json").unlink()
    files["no_split"] = _copy_dataset(digits_data, bad / "no_split")
    (files["no_split"] / "train.safetensors").unlink()
    files["torn_split"] = _copy_dataset(digits_data, bad / "torn_split")
    (files["torn_split"] / "val.safetensors").write_bytes(rng.randbytes(300))
    files["counts"] = _edit_manifest(_copy_dataset(digits_data, bad / "counts"), _swap_two_counts)
    files["labels"] = _label_out_of_range(_copy_dataset(digits_data, bad / "labels"))
    files["five_classes"] = _edit_manifest(_copy_dataset(digits_data, bad / "five_classes"), _five_classes)
    files["zero_std"] = _edit_manifest(_copy_dataset(digits_data, bad / "zero_std"), _zero_std)

    files["cifar_shape"] = _cifar10(bad / "shape.tar.gz", _batch(np.zeros((10, 3072), np.uint8), [0] * 10))
    files["cifar_labels"] = _cifar10(bad / "labels.tar.gz", _batch(np.zeros((10000, 3072), np.uint8), ["cat"] * 10000))
    files["cifar_code"] = _cifar10(bad / "code.tar.gz", pickle.dumps({b"data": RunsCode(marker)}, protocol=2))
    write("cifar_not_tar.tar.gz", gzip.compress(b"not a tar archive"))
    fashion = bad / "fashion"
    fashion.mkdir()
    for name in FASHION_FILES:
        (fashion / name).write_bytes(struct.pack(">I", 0x803) + b"\x00\x00")  # cut inside the header
    files["fashion"] = fashion
    return files


# id -> (arguments, exit code, what the one error line must say). `{name}` is a path from `paths`.
TRAIN = ["train", "--data", "{data}", "--out", "{bad}/run", "--epochs", "1", "--device", "cpu"]
CASES = {
    # CLI values
    "dataset-unknown-in-settings": (
        ["train", "--preset", "digits_lt", "--set", "data.dataset=imagenet"],
        2,
        "unknown dataset 'imagenet'",
    ),
    "preset-unknown-presets-command": (["presets", "cifar10-lt"], 2, "unknown preset 'cifar10-lt' (did you mean"),
    "loss-unknown": ([*TRAIN, "--set", "loss.name=bagmr"], 2, "unknown loss 'bagmr' (did you mean 'bagmar'?)"),
    "backbone-unknown": ([*TRAIN, "--set", "model.backbone=resnet32cifar"], 2, "unknown backbone 'resnet32cifar'"),
    "sampler-unknown": ([*TRAIN, "--set", "data.sampler=balanced"], 2, "setting data.sampler = 'balanced'"),
    "method-unknown-eval": (["eval", "{ckpt}", "--tau", "1", "--method", "pm"], 2, "unknown post-hoc method 'pm'"),
    "method-unknown-eval-without-tau": (
        ["eval", "{ckpt}", "--method", "tau_norm"],
        2,
        "unknown post-hoc method 'tau_norm'",
    ),
    "method-unknown-tune-tau": (["tune-tau", "{ckpt}", "--method", "la"], 2, "unknown post-hoc method 'la'"),
    "metric-unknown-tune-tau": (["tune-tau", "{ckpt}", "--metric", "accuracy"], 2, "unknown metric 'accuracy'"),
    "tau-not-a-number": (["eval", "{ckpt}", "--tau", "big"], 2, "--tau 'big': expected auto, none or a number"),
    "tau-nan": (["eval", "{ckpt}", "--tau", "nan"], 2, "--tau 'nan': expected a finite number"),
    "imb-below-1": (["prepare", "digits", "--imb", "0.99"], 2, "setting data.imb = 0.99: input should be greater"),
    "imb-zero": (["prepare", "digits", "--imb", "0"], 2, "setting data.imb = 0.0: input should be greater"),
    "imb-negative": (["prepare", "digits", "--imb", "-10"], 2, "setting data.imb = -10.0"),
    "imb-nan": (["prepare", "digits", "--imb", "NaN"], 2, "data.imb = nan: input should be a finite number"),
    "imb-inf": (["prepare", "digits", "--imb", "inf"], 2, "data.imb = inf: input should be a finite number"),
    "imb-not-a-number": (["prepare", "digits", "--imb", "ten"], 2, "Invalid value for '--imb'"),
    "imb-in-settings": ([*TRAIN, "--set", "data.imb=-1"], 2, "setting data.imb = -1"),
    "grid-two-parts": (["tune-tau", "{ckpt}", "--grid", "0:2"], 2, "tau grid '0:2': expected START:STOP:STEP"),
    "grid-empty": (["tune-tau", "{ckpt}", "--grid", ""], 2, "tau grid '': '' is not a number"),
    "grid-not-numbers": (["tune-tau", "{ckpt}", "--grid", "a:b:c"], 2, "'a' is not a number"),
    "grid-zero-step": (["tune-tau", "{ckpt}", "--grid", "0:1:0"], 2, "STEP must be positive"),
    "grid-reversed": (["tune-tau", "{ckpt}", "--grid", "2:0:0.1"], 2, "START is greater than STOP"),
    "grid-infinite": (["tune-tau", "{ckpt}", "--grid", "0:inf:1"], 2, "'inf' is not a finite number"),
    "grid-too-fine": (["tune-tau", "{ckpt}", "--grid", "0:1:1e-9"], 2, "more than 10000"),
    "set-unknown-key": ([*TRAIN, "--set", "optim.learning_rate=0.1"], 2, "unknown setting 'optim.learning_rate'"),
    "set-unknown-section": ([*TRAIN, "--set", "trian.epochs=3"], 2, "unknown setting 'trian' (did you mean 'train'?)"),
    "set-wrong-type": ([*TRAIN, "--set", "optim.lr=fast"], 2, "setting optim.lr = 'fast': input should be a valid"),
    "set-wrong-type-list": ([*TRAIN, "--set", "schedule.milestones=3"], 2, "setting schedule.milestones = 3"),
    "set-missing-equals": ([*TRAIN, "--set", "optim.lr 0.1"], 2, "--set 'optim.lr 0.1': expected section.key=value"),
    "set-missing-key": ([*TRAIN, "--set", "=3"], 2, "--set '=3': missing key before '='"),
    "set-key-below-a-value": ([*TRAIN, "--set", "optim.lr.x=1"], 2, "setting optim.lr"),
    "set-head-scale-on-a-linear-head": (
        [*TRAIN, "--set", "model.head_scale=30"],
        2,
        'settings model: head_scale scales cosines: it needs head = "normed"',
    ),
    "epochs-negative": ([*TRAIN[:-4], "--epochs", "-1"], 2, "setting train.epochs = -1"),
    "epochs-zero": ([*TRAIN[:-4], "--epochs", "0"], 2, "setting train.epochs = 0"),
    "batch-size-negative": ([*TRAIN, "--batch-size", "-8"], 2, "setting train.batch_size = -8"),
    "batch-size-zero": ([*TRAIN, "--batch-size", "0"], 2, "setting train.batch_size = 0"),
    "batch-size-zero-eval": (["eval", "{ckpt}", "--batch-size", "0"], 2, "--batch-size"),
    "device-cuda-train": ([*TRAIN[:-2], "--device", "cuda"], 2, "device 'cuda' requested but CUDA is not available"),
    "device-cuda-eval": (["eval", "{ckpt}", "--device", "cuda"], 2, "CUDA is not available"),
    "device-cuda-index-tune-tau": (["tune-tau", "{ckpt}", "--device", "cuda:3"], 2, "CUDA is not available"),
    "device-unknown": ([*TRAIN[:-2], "--device", "tpu"], 2, "unknown device 'tpu'; expected auto, cpu, cuda"),
    "option-unknown": (["train", "--epoch", "3"], 2, "No such option: --epoch"),
    "command-unknown": (["evaluate"], 2, "No such command 'evaluate'"),
    # config files
    "config-not-toml": (["train", "--config", "{not_toml}"], 2, "not_toml.toml' is not valid TOML"),
    "config-unknown-key": (
        ["train", "--config", "{unknown_key}"],
        2,
        "unknown setting 'optim.momentun' (did you mean 'momentum'?)",
    ),
    "config-wrong-type": (["train", "--config", "{wrong_type}"], 2, "setting train.batch_size = 'large'"),
    "config-section-not-a-table": (["train", "--config", "{wrong_section}"], 2, "setting train = 3"),
    "config-missing": (["train", "--config", "{bad}/nope.toml"], 2, "nope.toml' not found"),
    "config-directory": (["train", "--config", "{bad}"], 2, "is a directory, expected a TOML file"),
    "preset-directory": (["train", "--preset", "{preset_dir}"], 2, "preset_dir.toml' is a directory"),
    # checkpoints, for eval and for tune-tau
    **{
        f"checkpoint-{name}-{command}": ([command, path], code, fragment)
        for command in ("eval", "tune-tau")
        for name, path, code, fragment in [
            ("missing", "{bad}/nope.safetensors", 1, "nope.safetensors not found"),
            ("directory", "{bad}", 1, "is a directory, expected a .safetensors checkpoint"),
            ("empty", "{empty}", 1, "empty.safetensors is not a safetensors checkpoint (file is 0 bytes)"),
            ("random-bytes", "{random}", 1, "random.safetensors is not a valid safetensors file"),
            ("truncated", "{truncated}", 1, "truncated.safetensors is not a valid safetensors file"),
            ("pickle", "{pickle}", 1, "pickle.safetensors is not a valid safetensors file"),
            ("foreign", "{foreign}", 1, "foreign.safetensors is a safetensors file but not a bagmar checkpoint"),
            ("foreign-format-pt", "{hf}", 1, "hf.safetensors is a safetensors file but not a bagmar checkpoint"),
            ("newer-format", "{newer}", 1, "has checkpoint format version 2; this bagmar"),
        ]
    },
    "checkpoint-other-class-count-eval": (
        ["eval", "{ckpt}", "--data", "{five_classes}"],
        1,
        "has 5 classes but the checkpoint predicts 10",
    ),
    "checkpoint-other-class-count-tune-tau": (
        ["tune-tau", "{ckpt}", "--data", "{five_classes}"],
        1,
        "has 5 classes but the checkpoint predicts 10",
    ),
    # datasets
    "data-missing-directory": ([*TRAIN[:2], "{bad}/nowhere", *TRAIN[3:]], 1, "nowhere is not a prepared dataset"),
    "data-is-a-file": ([*TRAIN[:2], "{a_file}", *TRAIN[3:]], 1, "a_file is not a prepared dataset directory"),
    "data-manifest-missing": ([*TRAIN[:2], "{no_manifest}", *TRAIN[3:]], 1, "manifest.json is missing"),
    "data-split-file-missing": ([*TRAIN[:2], "{no_split}", *TRAIN[3:]], 1, "train.safetensors is missing"),
    "data-split-file-torn": ([*TRAIN[:2], "{torn_split}", *TRAIN[3:]], 1, "val.safetensors is not a readable"),
    "data-counts-disagree": ([*TRAIN[:2], "{counts}", *TRAIN[3:]], 1, "per-class counts differ from the manifest"),
    "data-manifest-zero-std": (
        [*TRAIN[:2], "{zero_std}", *TRAIN[3:]],
        1,
        "manifest schema: std.0: Input should be greater than 0",
    ),
    "data-labels-out-of-range": ([*TRAIN[:2], "{labels}", *TRAIN[3:]], 1, "labels outside [0, 10)"),
    "data-eval-manifest-missing": (["eval", "{ckpt}", "--data", "{no_manifest}"], 1, "manifest.json is missing"),
    "cifar-wrong-shape": (
        ["prepare", "cifar10", "--source", "{cifar_shape}", "--out", "{bad}/c"],
        1,
        "data_batch_1 data is uint8 (10, 3072), expected uint8 (10000, 3072)",
    ),
    "cifar-wrong-labels": (
        ["prepare", "cifar10", "--source", "{cifar_labels}", "--out", "{bad}/c"],
        1,
        "data_batch_1 has <U3 labels of shape (10000,), expected 10000 integers",
    ),
    "cifar-pickle-runs-code": (
        ["prepare", "cifar10", "--source", "{cifar_code}", "--out", "{bad}/c"],
        1,
        "asks for global 'posix.system'; bagmar's restricted unpickler refuses",
    ),
    "cifar-not-an-archive": (
        ["prepare", "cifar10", "--source", "{cifar_not_tar}", "--out", "{bad}/c"],
        1,
        "is not a readable tar archive",
    ),
    "cifar-source-missing": (
        ["prepare", "cifar10", "--source", "{bad}/nope.tar.gz", "--out", "{bad}/c"],
        1,
        "nope.tar.gz does not exist",
    ),
    "fashion-idx-damaged": (
        ["prepare", "fashion_mnist", "--source", "{fashion}", "--out", "{bad}/f"],
        1,
        "train-images-idx3-ubyte is truncated",
    ),
    "subset-unknown": (["prepare", "cifar10", "--subset", "cao", "--out", "{bad}/c"], 2, "unknown subset 'cao'"),
    "subset-cao2019-digits": (
        ["prepare", "digits", "--subset", "cao2019", "--out", "{bad}/d"],
        2,
        "applies to cifar10 and cifar100, not digits",
    ),
    "subset-folder": (
        ["prepare", "folder", "--root", "{bad}", "--subset", "cao2019", "--out", "{bad}/f"],
        2,
        "--subset does not apply to folder",
    ),
    "digits-takes-no-source": (
        ["prepare", "digits", "--source", "{fashion}", "--out", "{bad}/d"],
        2,
        "takes no --source",
    ),
    # output paths
    "out-under-a-file-train": ([*TRAIN[:4], "{a_file}/run", *TRAIN[5:]], 2, "cannot create run directory"),
    "out-holds-another-run-train": ([*TRAIN[:4], "{run}", *TRAIN[5:]], 2, "already holds a run; pass --resume"),
    "out-is-a-file-train": ([*TRAIN[:4], "{a_file}", *TRAIN[5:]], 2, "a_file exists and is not a directory"),
    "resume-without-checkpoint": ([*TRAIN, "--resume"], 2, "last.safetensors not found, nothing to resume"),
    "out-exists-prepare": (
        ["prepare", "digits", "--imb", "10", "--out", "{data}"],
        1,
        "already exists; pass --overwrite",
    ),
    "out-overwrite-not-a-dataset-prepare": (
        ["prepare", "digits", "--imb", "10", "--out", "{bad}", "--overwrite"],
        1,
        "is not a dataset directory (no manifest.json); --overwrite replaces only",
    ),
    "out-under-a-file-prepare": (
        ["prepare", "digits", "--out", "{a_file}/d"],
        1,
        "a_file is not a directory while writing",
    ),
    "plots-under-a-file-eval": (
        ["eval", "{ckpt}", "--plots", "{a_file}/plots"],
        1,
        "a_file is not a directory while writing",
    ),
    "save-logits-under-a-file": (
        ["eval", "{ckpt}", "--no-plots", "--save-logits", "{a_file}/l.safetensors"],
        1,
        "a_file is not a directory while writing",
    ),
}


@pytest.mark.parametrize(("args", "code", "fragment"), CASES.values(), ids=CASES.keys())
def test_bad_input_is_one_error_line_and_changes_nothing(cli, paths, args, code, fragment, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BAGMAR_DATA_DIR", str(tmp_path / "data"))
    user_files = (paths["bad"], paths["data"], paths["ckpt"].parent)
    before = snapshot(*user_files)
    outcome = cli(*expand(args, paths))
    assert_one_error_line(outcome, code, fragment)
    assert outcome.out == ""
    assert snapshot(*user_files) == before
    assert not (paths["bad"] / "run").exists() and not paths["marker"].exists()
    assert list(tmp_path.iterdir()) == []  # nothing in the working directory or the data directory


def test_read_only_run_directory(cli, paths, tmp_path, monkeypatch):
    """Root ignores permissions, so the check is simulated: os.access reports the directory not writable."""
    out = tmp_path / "run"
    out.mkdir()
    real_access = os.access

    def access(path, mode, **kwargs):
        return False if Path(path) == out and mode & os.W_OK else real_access(path, mode, **kwargs)

    monkeypatch.setattr(os, "access", access)
    outcome = cli(*expand(TRAIN[:4], paths), out, *TRAIN[5:])
    assert_one_error_line(outcome, 2, f"run directory {out} is not writable")
    assert list(out.iterdir()) == []


def full_disk(fd: int) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_full_disk_while_saving_logits(cli, paths, tmp_path, monkeypatch):
    logits = tmp_path / "logits.safetensors"
    logits.write_bytes(b"previous")
    monkeypatch.setattr(files.os, "fsync", full_disk)
    outcome = cli("eval", paths["ckpt"], "--no-plots", "--save-logits", logits)
    assert_one_error_line(outcome, 1, f"No space left on device while writing {logits}")
    assert logits.read_bytes() == b"previous" and [p.name for p in tmp_path.iterdir()] == ["logits.safetensors"]


def test_full_disk_while_preparing_leaves_nothing(cli, tmp_path, monkeypatch):
    def full(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, "write_bytes", full)
    outcome = cli("prepare", "digits", "--imb", "10", "--out", tmp_path / "d")
    assert_one_error_line(outcome, 1, f"No space left on device while writing {tmp_path / 'd'}")
    assert list(tmp_path.iterdir()) == []


def test_image_that_does_not_decode(cli, paths, tmp_path):
    image = tmp_path / "photo.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    outcome = cli("predict", paths["ckpt"], image)
    assert_one_error_line(outcome, 1, "1 image(s) could not be read")
    assert "photo.png" in outcome.out and "error" in outcome.out
