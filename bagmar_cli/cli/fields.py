"""From the library's words to the command line's: the flag that sets each setting or option a message names.

Library messages write a setting or option by its name in backticks (`out`, `train.epochs`, errors.py); the
error line shows the flag of the command that ran (`--out`, `--epochs`). A name no flag sets stays as written.
"""

from __future__ import annotations

import re
from typing import Any

# settings that `train` sets from a flag of its own (all others: --set KEY=VALUE or a TOML file)
SETTING_FLAGS = {
    "data.root": "--data",
    "train.epochs": "--epochs",
    "train.batch_size": "--batch-size",
    "train.device": "--device",
    "train.seed": "--seed",
    "stage2.model.weights": "--stage1",
}

_NAMED = re.compile(r"`([a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)*)`")


def option_flags(command: Any) -> dict[str, str]:
    """A command's options by parameter name and by their flag's own name -> their long flag (`val_fraction` ->
    `--val-fraction`; `format` -> `--format`, whose parameter is `fmt`).

    `command` is a click command (Typer's own copy of click: typed loosely so either click will do)."""
    flags: dict[str, str] = {}
    for param in command.params:
        longs = [opt for opt in (*param.opts, *param.secondary_opts) if opt.startswith("--")]
        if param.param_type_name == "option" and param.name and longs:
            flags[longs[0][2:].replace("-", "_")] = longs[0]  # `format` for --format, whatever the parameter's name
            flags[param.name] = longs[0]
    return flags


def flags_for(group: Any, args: list[str]) -> dict[str, str]:
    """Names -> flags for the command these arguments run; other commands' options fill in names it lacks."""
    flags: dict[str, str] = {}
    for command in group.commands.values():
        flags = option_flags(command) | flags
    ran = next((group.commands[a] for a in args if a in group.commands), None)
    if ran is not None:
        flags |= option_flags(ran)
        if ran.name == "train":
            flags |= SETTING_FLAGS
    return flags


def render(message: str, flags: dict[str, str]) -> str:
    """The message with each backticked name that a flag sets shown as that flag."""
    return _NAMED.sub(lambda m: flags.get(m.group(1), m.group(0)), message)
