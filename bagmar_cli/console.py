"""The two rich consoles: results go to stdout (for shells to capture), everything else to stderr."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from typing import Any

from rich.console import Console

from bagmar_cli.errors import BagmarError

err = Console(stderr=True, soft_wrap=True, highlight=False)
_WORDING: list[Callable[[str], str]] = [str]  # cli/ sets it: library lines name options in backticks, shown as flags


def word_names_with(render: Callable[[str], str]) -> None:
    """Have info, note and warn lines pass through `render` (cli/: each backticked option shown as its flag)."""
    _WORDING[0] = render


def _wording(text: str) -> str:
    """`text` as the command line words it (unchanged outside the CLI)."""
    return _WORDING[0](text)


class StdoutClosed(Exception):
    """The reader of stdout went away (`bagmar ... | head -1`): the command ends quietly, as shell tools do.

    Not an OSError, so that click does not turn it into a silent exit 1 on the way out.
    """


def result(text: str) -> None:
    """Write one result line to stdout, verbatim, and flush it: a result that cannot be delivered is an error."""
    stream = sys.stdout
    if stream is None:  # started with stdout closed (`>&-`)
        raise BagmarError("stdout is closed: the result could not be written")
    try:
        stream.write(text + "\n")
        stream.flush()
    except BrokenPipeError:
        raise StdoutClosed from None
    except (OSError, ValueError) as exc:  # ValueError: the stream was closed inside the process
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise BagmarError(f"cannot write the result to stdout: {reason}") from None


def result_json(payload: Any) -> None:
    """Write one JSON value to stdout; NaN and infinities become null (JSON has no such numbers)."""
    result(json.dumps(_finite(payload), allow_nan=False))


def _finite(value: Any) -> Any:
    """`value` with every non-finite float replaced by None, through dicts, lists and tuples."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def show(renderable: object) -> None:
    """Render a table, or a line with rich markup, on stderr (tables never go to stdout)."""
    err.print(renderable)


def info(text: str) -> None:
    """Write a progress or information line to stderr."""
    show(_wording(text))


def note(text: str) -> None:
    """Write a line the user should not miss (e.g. a split both tuned on and reported) to stderr."""
    show(f"[yellow]Note:[/yellow] {_wording(text)}")


def warn(text: str) -> None:
    """Write a warning line to stderr."""
    show(f"[yellow]Warning:[/yellow] {_wording(text)}")
