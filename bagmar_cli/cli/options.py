"""Options shared by several subcommands, declared once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

Preset = Annotated[Optional[str], typer.Option("--preset", "-p", help="Preset name (`bagmar presets`) or TOML file.")]
Config = Annotated[Optional[Path], typer.Option("--config", "-c", help="TOML settings file, applied over the preset.")]
Set = Annotated[
    Optional[list[str]],
    typer.Option("--set", "-s", help="Override one setting: section.key=value (repeatable).", metavar="KEY=VALUE"),
]
Data = Annotated[Optional[Path], typer.Option("--data", "-d", help="Dataset directory written by `bagmar prepare`.")]
Device = Annotated[Optional[str], typer.Option("--device", help="auto, cpu, cuda or cuda:N.")]
Json = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout instead of the table.")]
