"""The Typer app and the entry point that turns every failure into one `Error:` line and an exit code."""

from __future__ import annotations

import os
import sys

import click
import typer

from bagmar_cli import __version__
from bagmar_cli.cli.fields import flags_for, render
from bagmar_cli.console import StdoutClosed, err, result, word_names_with
from bagmar_cli.errors import BagmarError, Interrupted, SettingError
from bagmar_cli.signals import sigterm_as_interrupt

INTERRUPTED = 130  # the exit code of a command stopped by Ctrl-C (SIGINT) or SIGTERM
USAGE = 2  # a malformed command line or setting
FAILED = 1  # everything else the user can fix: a bad file, a missing dataset, a run that had to stop

app = typer.Typer(
    name="bagmar",
    help="Long-tailed image classification with the BaGMar (GALA) loss and prediction normalisation.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        result(f"bagmar {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
) -> None:
    """bagmar: prepare, train, tune-tau, eval, export, predict. Add --debug anywhere for tracebacks."""


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns (and, as a script, exits with) 0, 1 (failure) or 2 (usage error)."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("BAGMAR_DEBUG") == "1"
    args = [a for a in args if a != "--debug"]
    with sigterm_as_interrupt():
        code = _run(args, debug)
    if argv is None:
        sys.exit(code)
    return code


def _run(args: list[str], debug: bool) -> int:
    flags = flags_for(typer.main.get_group(app), args)
    word_names_with(lambda text: render(text, flags))  # warnings and notes name flags, as errors do
    try:
        result = app(args, prog_name="bagmar", standalone_mode=False)
    except StdoutClosed:
        return _stdout_closed()
    except BagmarError as exc:
        return _fail(render(str(exc), flags), exit_code(exc), debug)
    except (KeyboardInterrupt, typer.Abort, click.exceptions.Abort):
        return _interrupted()
    except (typer.Exit, click.exceptions.Exit) as exc:
        return exc.exit_code
    except Exception as exc:
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):  # click's (or typer's vendored) errors
            if type(exc).__name__ == "NoArgsIsHelpError":
                err.out(exc.format_message())
                return USAGE
            return _fail(exc.format_message(), exc.exit_code or 1, debug)
        if debug:
            raise
        return _fail(f"unexpected {type(exc).__name__}: {exc} (run with --debug for the traceback)", 1, debug)
    if result == INTERRUPTED:  # Typer turns a KeyboardInterrupt inside a command into a silent exit code 130
        return _interrupted()
    return result if isinstance(result, int) else 0


def exit_code(exc: BagmarError) -> int:
    """The exit code of a domain error: 2 for a setting, 130 for an interrupt, 1 otherwise."""
    if isinstance(exc, SettingError):
        return USAGE
    if isinstance(exc, Interrupted):
        return INTERRUPTED
    return FAILED


def _stdout_closed() -> int:
    """The reader of stdout left (`| head -1`): stop quietly with 0, and keep Python's exit flush from failing."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (AttributeError, OSError, ValueError):  # no real stdout file (e.g. under a test's capture)
        pass
    return 0


def _interrupted() -> int:
    """Any command stopped by Ctrl-C or SIGTERM; `train` says how to resume through errors.Interrupted."""
    err.out("Error: interrupted")
    return INTERRUPTED


def _fail(message: str, code: int, debug: bool) -> int:
    if debug:
        err.print_exception(show_locals=False)
    first = " ".join(message.strip().split("\n")[0].split()) or "failed"
    err.out(f"Error: {first}", highlight=False)
    return code
