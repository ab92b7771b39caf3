"""The `bagmar` command: one module per subcommand, each a thin layer over one library call."""

from bagmar_cli.cli import demo, evaluate, export, predict, prepare, presets, train, tune_tau  # noqa: F401  (register commands)
from bagmar_cli.cli.app import app, main

__all__ = ["app", "main"]
