"""Options shared by several subcommands, declared once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from bagmar_cli.choices import Choice

Preset = Annotated[str | None, typer.Option("--preset", "-p", help="Preset name (`bagmar presets`) or TOML file.")]
Config = Annotated[Path | None, typer.Option("--config", "-c", help="TOML settings file, applied over the preset.")]
Set = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override one setting: section.key=value (repeatable).", metavar="KEY=VALUE"),
]
Data = Annotated[Path | None, typer.Option("--data", "-d", help="Dataset directory written by `bagmar prepare`.")]
Device = Annotated[str | None, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")]
Weights = Annotated[
    str | None,
    typer.Option("--weights", help="ema or model (default: the weights validation used, EMA when trained with it)."),
]
Tta = Annotated[
    str | None,
    typer.Option(
        "--tta",
        help="Test-time views, logits averaged: none, flip, five_crop, five_crop_flip (LIFT's five crops) "
        "[default: the checkpoint's eval.tta].",
    ),
]
Json = Annotated[
    bool,
    typer.Option("--json", help="Also print one JSON object on stdout (the table still goes to stderr)."),
]


def choice(kind: type[Choice], *names: str, help: str) -> Any:
    """A Typer option of fixed values: parsed by `kind.parse`, so a bad value is one bagmar `Error:` line."""
    return typer.Option(*names, parser=kind.parse, help=help)
