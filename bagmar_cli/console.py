"""The two rich consoles: results go to stdout (for shells to capture), everything else to stderr."""

from rich.console import Console

out = Console(soft_wrap=True, highlight=False)
err = Console(stderr=True, soft_wrap=True, highlight=False)


def result(text: str) -> None:
    """Write one result line to stdout, verbatim (no markup, no wrapping)."""
    out.out(text, highlight=False)


def info(text: str) -> None:
    """Write a progress or information line to stderr."""
    err.print(text)


def warn(text: str) -> None:
    """Write a warning line to stderr."""
    err.print(f"[yellow]Warning:[/yellow] {text}", highlight=False)
