"""The two rich consoles: results go to stdout (for shells to capture), everything else to stderr."""

from rich.console import Console

out = Console(soft_wrap=True, highlight=False)
err = Console(stderr=True, soft_wrap=True, highlight=False)


def result(text: str) -> None:
    """Write one result line to stdout, verbatim (no markup, no wrapping)."""
    out.out(text, highlight=False)


def show(renderable: object) -> None:
    """Render a table, or a line with rich markup, on stderr (tables never go to stdout)."""
    err.print(renderable)


def info(text: str) -> None:
    """Write a progress or information line to stderr."""
    show(text)


def note(text: str) -> None:
    """Write a line the user should not miss (e.g. a split both tuned on and reported) to stderr."""
    show(f"[yellow]Note:[/yellow] {text}")


def warn(text: str) -> None:
    """Write a warning line to stderr."""
    show(f"[yellow]Warning:[/yellow] {text}")
