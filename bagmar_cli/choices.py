"""Choosing among names: the "did you mean" hint on a miss, and the fixed option values as enums (no torch here)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from enum import StrEnum
from typing import TypeVar

from bagmar_cli.errors import SettingError

C = TypeVar("C", bound="Choice")


def did_you_mean(word: str, choices: Iterable[str], *, n: int = 1, cutoff: float = 0.6, quote: bool = True) -> str:
    """` (did you mean 'x'?)` for the up to n choices closest to `word`, or "" when none is close."""
    close = difflib.get_close_matches(str(word), list(choices), n=n, cutoff=cutoff)
    if not close:
        return ""
    return f" (did you mean {', '.join(repr(c) if quote else c for c in close)}?)"


class Choice(StrEnum):
    """A fixed set of option values; members compare equal to their strings, and `parse` is the one check.

    Typer reads a subclass through `parser=Kind.parse`, so a bad value gets bagmar's own `Error:` line; the
    library calls `parse` again on what it is given, so it takes a member or its string.
    """

    @classmethod
    def label(cls) -> str:
        """What the value names, in the error message ("unknown <label> 'x'")."""
        return cls.__name__.lower()

    @classmethod
    def parse(cls: type[C], value: str | C) -> C:
        """The member for `value`; SettingError naming the choices (and the closest one) otherwise."""
        try:
            return cls(value)
        except ValueError:
            names = [member.value for member in cls]
            hint = did_you_mean(str(value), names, quote=False)
            raise SettingError(f"unknown {cls.label()} {value!r}{hint}; choose from {', '.join(names)}") from None

    @classmethod
    def parse_optional(cls: type[C], value: str | C | None) -> C | None:
        """`parse`, passing None through (an option left to its default)."""
        return None if value is None else cls.parse(value)


class PosthocMethod(Choice):
    """The post-hoc methods (the `method` option)."""

    PN = "pn"
    TAU_NORM = "tau-norm"
    LOGIT_ADJUST = "logit-adjust"

    @classmethod
    def label(cls) -> str:
        return "post-hoc method"


class SearchMetric(Choice):
    """The accuracy column that picks the best τ (tune-tau's `metric` option)."""

    TOP1 = "top1"
    MACRO = "macro"
    MANY = "many"
    MEDIUM = "medium"
    FEW = "few"

    @classmethod
    def label(cls) -> str:
        return "metric"


class ExportFormat(Choice):
    """The file formats `bagmar export` writes (its `format` option)."""

    ONNX = "onnx"
    TORCHSCRIPT = "torchscript"
    SAFETENSORS = "safetensors"  # a bundle: a checkpoint of kind "bundle"

    @classmethod
    def label(cls) -> str:
        return "`format`"


class Output(Choice):
    """What an export returns (its `output` option), and the name of that output."""

    LOGITS = "logits"
    PROBABILITIES = "probabilities"

    @classmethod
    def label(cls) -> str:
        return "`output`"
