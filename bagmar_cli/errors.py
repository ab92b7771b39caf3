"""Domain errors: what went wrong, in the library's words; cli/ turns each into one `Error:` line and an exit code.

Messages name settings and options, never command-line flags: a setting or option is written in backticks by its
name (`out`, `resume`, `train.epochs`), and cli/ shows the flag that sets it in the command that ran."""

from __future__ import annotations

from pathlib import Path


class BagmarError(Exception):
    """A failure the user can fix (bad file, bad value)."""


class SettingError(BagmarError):
    """A setting or option whose value is malformed, out of range, or at odds with another one."""


class DatasetError(BagmarError):
    """A dataset directory, archive or file that is missing or not valid."""


class CheckpointError(BagmarError):
    """A checkpoint that is missing, damaged, or not a bagmar checkpoint."""


class DownloadError(BagmarError):
    """A download that failed (offline, wrong checksum)."""


class TrainingError(BagmarError):
    """A training run that had to stop (non-finite loss, locked run directory)."""


class Interrupted(BagmarError):
    """A command stopped by Ctrl-C or SIGTERM; the message says what is kept and how to continue."""


class WriteError(BagmarError, OSError):
    """A file that could not be written (full disk, read-only place); still an OSError for callers that catch those."""

    def __init__(self, errno: int | None, strerror: str, filename: str) -> None:
        super().__init__(errno, strerror, filename)

    def __str__(self) -> str:
        return f"{self.strerror} while writing {self.filename}"

    @classmethod
    def of(cls, exc: OSError, path: str | Path) -> WriteError:
        """The WriteError for `exc`, raised while writing `path`; names a file that stands where a folder must be."""
        if isinstance(exc, WriteError):
            return exc
        blocker = next((p for p in Path(path).parents if p.exists() and not p.is_dir()), None)
        reason = f"{blocker} is not a directory" if blocker else exc.strerror or str(exc)
        return cls(exc.errno, reason, str(path))
