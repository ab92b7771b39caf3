"""The settings format's version, and `migrate`: any saved tree (a run's config.toml, a checkpoint's settings, a
user's TOML) brought to the current version before it is validated, so old files load and dead keys can go.

Version 1 is every tree written before versions were recorded (none says `settings_version`); version 2 drops
`eval.split`, which was never read (`bagmar eval`'s `split` option chooses).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

SETTINGS_VERSION = 2
VERSION_KEY = "settings_version"


def _without_eval_split(table: dict[str, Any]) -> dict[str, Any]:
    """A copy of `table` whose [eval] (if any) has no `split`."""
    section = table.get("eval")
    if not isinstance(section, dict):
        return dict(table)
    return {**table, "eval": {key: value for key, value in section.items() if key != "split"}}


def _drop_eval_split(tree: dict[str, Any]) -> dict[str, Any]:
    """1 -> 2: `eval.split` is gone, from the tree and from its [stage2] table."""
    migrated = _without_eval_split(tree)
    if isinstance(tree.get("stage2"), dict):
        migrated["stage2"] = _without_eval_split(tree["stage2"])
    return migrated


# STEPS[v] turns a version-v tree into a version v + 1 tree
STEPS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _drop_eval_split}


def migrate(tree: dict[str, Any]) -> dict[str, Any]:
    """`tree` in the current version (a new dict; `tree` is not changed); ValueError for a version this bagmar
    does not know (newer, or not a positive whole number)."""
    version = tree.get(VERSION_KEY, 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"{VERSION_KEY} = {version!r}: expected a whole number from 1 to {SETTINGS_VERSION}")
    if version > SETTINGS_VERSION:
        raise ValueError(
            f"{VERSION_KEY} {version} is newer than this bagmar reads ({SETTINGS_VERSION}); upgrade bagmar"
        )
    for step in range(version, SETTINGS_VERSION):
        tree = STEPS[step](tree)
    return {**tree, VERSION_KEY: SETTINGS_VERSION}
