"""What `bagmar prepare` hands a source: its options in one typed object, and the check against what a source takes.

Each source declares the options it accepts (`Source.accepts`); a source-specific option given to a source that does
not take it is refused here, named in backticks, so that cli/ shows it as the flag of the command that ran.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

from bagmar_cli.errors import SettingError

# the options that only some sources take, in the order a refusal checks them (the first one given is named)
SPECIFIC = (
    "imb",
    "val_per_class",
    "root",
    "splits",
    "source",
    "subset",
    "measure_stats",
    "val_fraction",
    "test_fraction",
    "image_size",
    "eval_resize",
)
TENSOR_OPTIONS = frozenset({"imb", "val_per_class", "source", "subset"})  # what an in-memory dataset takes
# what a benchmark's official lists take; `measure_stats` is taken and unused (ImageNet's statistics), as it was
BENCHMARK_OPTIONS = frozenset({"root", "splits", "measure_stats"})
FOLDER_OPTIONS = frozenset(SPECIFIC) - {"splits", "source", "subset"}  # what a user's folder tree takes


@dataclass(frozen=True)
class PrepareOptions:
    """The options of `bagmar prepare`, each at its default unless given."""

    imb: float | None = None  # None: 100 for an in-memory dataset, none drawn for a folder
    profile: str = "exp"
    seed: int = 0
    val_per_class: int = 0
    subset: str = "bagmar"
    val_fraction: float | None = None
    test_fraction: float | None = None
    measure_stats: bool = False
    source: Path | None = None
    root: Path | None = None
    splits: Path | None = None
    image_size: int | None = None
    eval_resize: int | None = None
    verify: bool = True
    out: Path | None = None
    overwrite: bool = False

    def given(self) -> list[str]:
        """The source-specific options set away from their defaults, in SPECIFIC's order."""
        defaults = {f.name: f.default for f in fields(self)}
        return [name for name in SPECIFIC if getattr(self, name) != defaults[name]]


def check_options(name: str, accepts: frozenset[str], needs_root: bool, options: PrepareOptions) -> None:
    """SettingError for an option source `name` does not take, or for a missing `root` where it needs one."""
    for option in options.given():
        if option not in accepts:
            raise SettingError(f"`{option}` does not apply to {name}")
    if needs_root and options.root is None:
        raise SettingError(f"prepare {name} needs `root` DIR, the folder that holds its images")
