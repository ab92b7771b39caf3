"""The `bagmar` command: one module per subcommand, each a thin layer over one library call."""

from bagmar_cli.cli import (  # noqa: F401  (register commands)
    compare,
    demo,
    evaluate,
    export,
    predict,
    prepare,
    presets,
    train,
    tune_tau,
)
from bagmar_cli.cli.app import app, main

__all__ = ["app", "main"]
