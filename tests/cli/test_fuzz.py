"""Random command lines for every subcommand: always exit 0, 1 or 2, never a traceback, and nothing written
outside the test's temporary directory.

Each example runs in a fresh directory (the working directory, $BAGMAR_DATA_DIR and tempfile's directory)
holding a copy of the session's checkpoint and dataset, so that some command lines get past validation.
Training itself is replaced by an error and downloads fail at once, so that no example runs for long.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import urllib.error
from pathlib import Path

import pytest
import torch
import typer
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image
from support.training import with_hooks

from bagmar_cli.cli.app import app
from bagmar_cli.errors import TrainingError
from bagmar_cli.plots import pyplot

pyplot()  # matplotlib's first import writes its cache folders: here, before the write watch starts

COMMANDS = {info.name: typer.main.get_command(app).commands[info.name] for info in app.registered_commands}
PATHS = ["ckpt.safetensors", "ds", "image.png", "file.txt", "dir", "file.txt/below", "missing.safetensors", ".", ".."]
VALUES = [
    "",
    " ",
    "0",
    "1",
    "-1",
    "2",
    "0.5",
    "1e30",
    "-1e-9",
    "nan",
    "inf",
    "-inf",
    "auto",
    "none",
    "cpu",
    "cuda",
    "cuda:1",
    "digits",
    "cifar10",
    "fashion_mnist",
    "pn",
    "tau-norm",
    "logit-adjust",
    "top1",
    "val",
    "test",
    "onnx",
    "torchscript",
    "safetensors",
    "probabilities",
    "dynamic",
    "0:1:0.5",
    "1:0:1",
    ":",
    "=",
    "a=b",
    "train.epochs=1",
    "train.epochs=-1",
    "loss.name=x",
    "data.root=ds",
    "model.backbone=resnet20_cifar",
    "digits_lt",
    "cifar100_lt",
    "--",
    "-",
    "--help",
    "-x",
    "é",
    "ünïcode/ø",
    *PATHS,
]
# Found by this test in code owned elsewhere, reported, skipped here until fixed:
KNOWN_BUGS: list[str] = []  # messages of bugs found and not yet fixed (none at present)
WRITES = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
WRITE_EVENTS = {
    "os.mkdir",
    "os.rename",
    "os.remove",
    "os.rmdir",
    "os.truncate",
    "os.chmod",
    "os.utime",
    "os.link",
    "os.symlink",
    "shutil.rmtree",
    "shutil.copyfile",
    "shutil.move",
}


class WriteWatch:
    """An audit hook that records writes outside `root` while `root` is set."""

    def __init__(self) -> None:
        self.root: str | None = None
        self.outside: list[str] = []
        sys.addaudithook(self._audit)

    def _audit(self, event: str, args: tuple) -> None:
        if self.root is None:
            return
        if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)) and (args[2] or 0) & WRITES:
            self._check(event, args[0])
        elif event in WRITE_EVENTS:
            for arg in args[:2]:
                if isinstance(arg, (str, bytes, os.PathLike)):
                    self._check(event, arg)

    def _check(self, event: str, path: str | bytes | os.PathLike) -> None:
        absolute = os.path.abspath(os.fsdecode(path))
        inside = absolute == self.root or absolute.startswith(self.root + os.sep)
        if not inside and not absolute.startswith("/dev/") and "__pycache__" not in absolute:
            self.outside.append(f"{event} {absolute}")


_WATCH: list[WriteWatch] = []  # audit hooks cannot be removed: one per process, idle outside this test


def watch() -> WriteWatch:
    if not _WATCH:
        _WATCH.append(WriteWatch())
    return _WATCH[0]


def option_names(command) -> list[str]:
    return [name for param in command.params for name in (*param.opts, *param.secondary_opts) if name.startswith("-")]


@st.composite
def command_lines(draw) -> list[str]:
    name = draw(st.sampled_from(sorted(COMMANDS)))
    options = option_names(COMMANDS[name])
    junk = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=6)
    token = st.one_of(st.sampled_from(VALUES), junk, st.sampled_from(options) if options else st.nothing())
    pair = st.tuples(st.sampled_from(options), st.sampled_from(VALUES)).map(list) if options else st.nothing()
    parts = draw(st.lists(st.one_of(token.map(lambda t: [t]), pair), max_size=6))
    return [name, *(arg for part in parts for arg in part)]


def populate(folder: Path, ckpt: Path, data: Path) -> None:
    """What an example's working directory holds: a checkpoint, a dataset, an image, a file and a folder."""
    shutil.copy(ckpt, folder / "ckpt.safetensors")
    shutil.copytree(data, folder / "ds")
    Image.new("L", (8, 8), 128).save(folder / "image.png")
    (folder / "file.txt").write_text("not what anything expects\n")
    (folder / "dir").mkdir()


def no_training(*args, **kwargs):
    raise TrainingError("training is off in the fuzz test")


def offline(*args, **kwargs):
    raise urllib.error.URLError("offline in the fuzz test")


FUZZ = dict(
    deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)


@settings(max_examples=int(os.environ.get("BAGMAR_FUZZ_EXAMPLES", "10")), **FUZZ)
@given(args=command_lines())
def test_random_command_lines_fail_cleanly(cli, digits_run, digits_data, tmp_path, monkeypatch, args):
    fails_cleanly(cli, digits_run, digits_data, tmp_path, monkeypatch, args)


@pytest.mark.slow
@settings(max_examples=200, **FUZZ)
@given(args=command_lines())
def test_many_random_command_lines_fail_cleanly(cli, digits_run, digits_data, tmp_path, monkeypatch, args):
    fails_cleanly(cli, digits_run, digits_data, tmp_path, monkeypatch, args)


def fails_cleanly(cli, digits_run, digits_data, tmp_path, monkeypatch, args):
    """One command line: exit 0, 1 or 2, an `Error:` line on failure, no traceback, no file written outside."""
    with_hooks(monkeypatch, on_epoch_start=no_training)
    monkeypatch.setattr("bagmar_cli.data.download.urlopen", offline)
    monkeypatch.setattr("bagmar_cli.data.sources.fashion_mnist.SYSTEM_DIR", tmp_path / "no-system-copy")
    torch.manual_seed(0)
    folder = Path(tempfile.mkdtemp(dir=tmp_path))
    populate(folder, digits_run, digits_data)
    monkeypatch.chdir(folder)
    monkeypatch.setenv("BAGMAR_DATA_DIR", str(folder / "data"))
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    watcher = watch()
    watcher.root, watcher.outside = str(tmp_path), []  # `..` names tmp_path: allowed
    try:
        outcome = cli(*args)
    finally:
        watcher.root = None
    shutil.rmtree(folder, ignore_errors=True)
    assume(not any(bug in outcome.err for bug in KNOWN_BUGS))
    assert outcome.code in (0, 1, 2), (args, outcome.err)
    assert "Traceback" not in outcome.err + outcome.out, args
    assert "run with --debug for the traceback" not in outcome.err, (args, outcome.err)  # an unforeseen exception
    assert outcome.code == 0 or "Error:" in outcome.err, (args, outcome.err)
    assert watcher.outside == [], (args, watcher.outside)
