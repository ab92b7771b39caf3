"""`bagmar presets [NAME]`: list the shipped presets, or print one resolved."""

from __future__ import annotations

from typing import Annotated

import typer

from bagmar_cli.cli.app import app
from bagmar_cli.console import result
from bagmar_cli.settings import load_settings, preset_names


@app.command("presets")
def presets_command(
    name: Annotated[
        str | None, typer.Argument(help="A preset to print as resolved TOML, each value explained in a comment.")
    ] = None,
) -> None:
    """List presets with their descriptions, or print one preset's resolved settings (unset ones commented out)."""
    if name:
        from bagmar_cli.reference import explained_toml

        result(explained_toml(load_settings(preset=name)).rstrip())
        return
    names = preset_names()
    width = max(map(len, names), default=0)
    for preset in names:
        result(f"{preset:<{width}}  {load_settings(preset=preset).description}")
