"""A run directory: its paths, refusing to clobber another run, and a lock so two trainers never share one."""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import os
import shutil
from pathlib import Path

from bagmar_cli.errors import SettingError, TrainingError

LOCK_NAME = ".lock"
RUN_FILES = ("last.safetensors", "best.safetensors", "metrics.jsonl", "config.toml", "adapters.safetensors")
STAGES = ("stage1", "stage2")  # a two-stage run keeps each stage's run directory under its own
# What bagmar writes into a run directory: the run's files, its lock, and what eval, tune-tau and export put
# beside a checkpoint, with the temporaries of their atomic writes. `overwrite` replaces a directory holding
# only these.
_OUTPUTS = (
    *RUN_FILES,
    "eval-*-per-class.png",
    "eval-*-confused.png",
    "eval-*-reliability.png",
    "tau-*.png",
    "events.out.tfevents.*",  # TensorBoard's (engine/tensorboard.py)
    *(
        f"{stem}{suffix}{sidecar}"
        for stem in ("best", "last")
        for suffix in (".onnx", ".torchscript.pt", ".bundle.safetensors")
        for sidecar in ("", ".json")
    ),
)
WRITTEN_BY_BAGMAR = (*_OUTPUTS, LOCK_NAME, *(f".{name}.*.tmp" for name in _OUTPUTS))


class RunDir:
    """Owns `path` for the duration of a `with` block through a lock file holding the owner's pid."""

    def __init__(self, path: Path, *, overwrite: bool = False, resume: bool = False) -> None:
        self.path = Path(path)
        self.last = self.last_of(self.path)
        self.best = self.path / "best.safetensors"
        self.adapters = self.path / "adapters.safetensors"  # model.peft runs: the selected weights' adapters only
        self.metrics = self.path / "metrics.jsonl"
        self.config = self.config_of(self.path)
        self._overwrite = overwrite and not resume
        self._resume = resume
        self._check(overwrite, resume)

    def _check(self, overwrite: bool, resume: bool) -> None:
        if self.path.exists() and not self.path.is_dir():
            raise SettingError(f"`out` {self.path} exists and is not a directory")
        holds_run = self.path.is_dir() and any((self.path / name).exists() for name in (*RUN_FILES, *STAGES))
        if holds_run and not (overwrite or resume):
            raise SettingError(f"`out` {self.path} already holds a run; pass `resume` to continue it or `overwrite`")
        if resume and not self.resumable(self.path):
            raise SettingError(f"`resume`: {self.last} not found, nothing to resume")
        if self._overwrite and self.path.is_dir():
            foreign = not_written_by_bagmar(self.path)
            if foreign:
                shown = ", ".join(str(self.path / name) for name in foreign[:5])
                more = f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""
                raise SettingError(
                    f"`out` {self.path} holds files bagmar did not write ({shown}{more}); `overwrite` replaces only "
                    "a run directory holding nothing else: move them, or choose another `out`"
                )

    @staticmethod
    def config_of(path: Path) -> Path:
        """The settings file of run directory `path`, written when its run starts."""
        return Path(path) / "config.toml"

    @staticmethod
    def last_of(path: Path) -> Path:
        """The checkpoint of the last completed epoch in run directory `path`."""
        return Path(path) / "last.safetensors"

    @staticmethod
    def selected_of(path: Path) -> Path:
        """The checkpoint a finished run in `path` selected: best.safetensors, else (no validation) the last."""
        best = Path(path) / "best.safetensors"
        return best if best.exists() else RunDir.last_of(path)

    @staticmethod
    def resumable(path: Path) -> bool:
        """True when run directory `path` holds a completed epoch to continue from (in a stage's directory too)."""
        return any(RunDir.last_of(folder).is_file() for folder in (Path(path), *(Path(path) / s for s in STAGES)))

    def __enter__(self) -> RunDir:
        self._created = not self.path.exists()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SettingError(f"cannot create run directory {self.path}: {exc.strerror}") from None
        if not os.access(self.path, os.W_OK):
            self._remove_if_unused()
            raise SettingError(f"run directory {self.path} is not writable")
        self._lock = self.path / LOCK_NAME
        _acquire(self._lock)
        for name in RUN_FILES:  # temporaries of writes cut short by a killed run
            for leftover in self.path.glob(f".{name}.*.tmp"):
                leftover.unlink(missing_ok=True)
        if self._overwrite:  # the replaced run's files go, so nothing of it outlives an interrupted overwrite
            for name in not_written_by_bagmar(self.path, invert=True):
                if name in STAGES:
                    shutil.rmtree(self.path / name)  # a stage's directory, holding only what bagmar wrote
                elif name != LOCK_NAME:
                    (self.path / name).unlink(missing_ok=True)
        return self

    def __exit__(self, failure: type[BaseException] | None, *exc: object) -> None:
        self._lock.unlink(missing_ok=True)
        if failure is not None and not self._resume and not self.resumable(self.path):
            self._remove_started()
        self._remove_if_unused()

    def _remove_started(self) -> None:
        """A run that failed before its first checkpoint leaves nothing: its settings and empty metrics go, so the
        same command works again (a stage's directory under a two-stage run has cleaned up after itself)."""
        for name in RUN_FILES:
            (self.path / name).unlink(missing_ok=True)
        for events in self.path.glob("events.out.tfevents.*"):
            events.unlink(missing_ok=True)

    def _remove_if_unused(self) -> None:
        """Remove the directory this run created when it failed before writing anything into it."""
        if self._created:
            with contextlib.suppress(OSError):  # not empty: it holds what the run wrote
                self.path.rmdir()


def not_written_by_bagmar(path: Path, *, invert: bool = False, stages: bool = True) -> list[str]:
    """Sorted names in run directory `path` that bagmar did not write (or, `invert`, the ones it did); a stage's
    directory of a two-stage run (`stages`) is bagmar's when it holds only what bagmar writes into a run."""
    names = []
    for entry in sorted(path.iterdir(), key=lambda p: p.name):
        if stages and entry.name in STAGES and entry.is_dir() and not entry.is_symlink():
            ours = not not_written_by_bagmar(entry, stages=False)
        else:
            ours = (
                entry.is_file()
                and not entry.is_symlink()
                and any(fnmatch.fnmatchcase(entry.name, pattern) for pattern in WRITTEN_BY_BAGMAR)
            )
        if ours == invert:
            names.append(entry.name)
    return names


def _acquire(lock: Path) -> None:
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = _owner(lock)
            if owner is not None and _alive(owner):
                raise TrainingError(f"{lock.parent} is in use by another bagmar process (pid {owner})") from None
            lock.unlink(missing_ok=True)  # stale: its owner is gone
            continue
        with os.fdopen(fd, "w") as handle:
            handle.write(f"{os.getpid()}\n")
        return
    raise TrainingError(f"cannot take the lock {lock}")


def _owner(lock: Path) -> int | None:
    try:
        return int(lock.read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno == errno.EPERM
    return True
