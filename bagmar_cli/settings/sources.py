"""Where settings come from, and in which order: defaults < preset (`preset`, a name or a file) < config file
(`config`) < `overrides` (section.key=value each) < explicit command-line flags.

Presets ship in `bagmar_cli.presets` and may `inherit` another; every file is read with size and type checks.
"""

from __future__ import annotations

import importlib.resources
import os
import re
import stat
import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from bagmar_cli.choices import did_you_mean
from bagmar_cli.errors import SettingError
from bagmar_cli.settings.messages import describe
from bagmar_cli.settings.schema import Settings
from bagmar_cli.settings.trees import flatten_settings, merge, nest
from bagmar_cli.settings.versions import SETTINGS_VERSION, VERSION_KEY, migrate

PRESET_PACKAGE = "bagmar_cli.presets"
INHERIT_KEY = "inherit"
PRESET_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")  # a shipped preset's name: no path, no leading dot
MAX_SETTINGS_FILE = 1 << 20  # 1 MiB: a config or preset file larger than this is refused unread


def load_settings(
    preset: str | None = None,
    config: str | Path | None = None,
    overrides: list[str] | None = None,
    flags: dict[str, Any] | None = None,
    *,
    default_preset: str | None = None,
    base: Settings | None = None,
) -> Settings:
    """Build Settings from the sources in order of precedence (later wins), over `base` (else the defaults).

    `default_preset` (a shipped preset's name, e.g. a dataset's) stands in for `preset` when none is given.
    """
    # every file is migrated as it is read, so the merged tree is in the current version
    tree: dict[str, Any] = base.model_dump(mode="json", exclude_none=True) if base is not None else {}
    tree[VERSION_KEY] = SETTINGS_VERSION
    if preset:
        tree = merge(tree, read_preset(preset))
    elif default_preset:
        tree = merge(tree, read_preset(default_preset, by_name=True))
    if config:
        tree = merge(tree, _read_settings_file(Path(config), "config file"))
    for item in overrides or []:
        tree = merge(tree, nest(*parse_override(item)))
    for key, value in (flags or {}).items():
        if value is not None:
            tree = merge(tree, nest(key, value))
    return validate(tree)


def validate(tree: dict[str, Any]) -> Settings:
    """Validate a raw settings tree, turning pydantic's errors into one readable line."""
    try:
        return Settings.model_validate(tree)
    except ValidationError as exc:
        raise SettingError(describe(exc, tree, Settings)) from None


def read_settings_file(path: Path, what: str = "config file") -> Settings:
    """Settings from a TOML file (a run's config.toml), with the checks of a `config` file."""
    return validate(_read_settings_file(Path(path), what))


def changed_settings(recorded: Settings, given: Settings) -> list[tuple[str, Any, Any]]:
    """(dotted key, recorded value, given value) of every setting that differs, except the description."""
    old, new = flatten_settings(recorded.model_dump(mode="json")), flatten_settings(given.model_dump(mode="json"))
    return [
        (key, old.get(key), new.get(key)) for key in sorted(old.keys() | new.keys()) if old.get(key) != new.get(key)
    ]


def parse_override(item: str) -> tuple[str, Any]:
    """Parse `section.key=value`; the value is read as TOML where it parses, else as a string."""
    if "=" not in item:
        raise SettingError(f"`overrides` {item!r}: expected section.key=value")
    key, raw = (part.strip() for part in item.split("=", 1))
    if not key:
        raise SettingError(f"`overrides` {item!r}: missing key before '='")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    except RecursionError:
        raise SettingError(f"`overrides` {key}: the value is nested too deeply") from None
    return key, value


# -- presets -----------------------------------------------------------------------------------


def preset_names() -> list[str]:
    """Names of the presets shipped with the package, sorted."""
    root = importlib.resources.files(PRESET_PACKAGE)
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".toml"))


def read_preset(name_or_file: str, *, by_name: bool = False) -> dict[str, Any]:
    """A preset's raw tree, following `inherit = "other"` chains; `by_name`: a shipped preset only, never a file."""
    return _resolve(name_or_file, seen=(), by_name=by_name)


def _resolve(name_or_file: str, seen: tuple[str, ...], by_name: bool) -> dict[str, Any]:
    if name_or_file in seen:
        raise SettingError(f"preset {name_or_file!r} inherits from itself ({' -> '.join(seen)})")
    tree = _read_settings_file(_preset_path(name_or_file, by_name), "preset")
    parent = tree.pop(INHERIT_KEY, None)
    if parent is None:
        return tree
    return merge(_resolve(str(parent), (*seen, name_or_file), by_name), tree)


def _preset_path(name_or_file: str, by_name: bool = False) -> Path:
    path = Path(name_or_file)
    if not by_name and (path.suffix == ".toml" or os.sep in name_or_file or path.exists()):
        if not path.exists():
            raise SettingError(f"preset file {name_or_file!r} not found")
        return path  # a directory, device or FIFO is refused by _read_settings_file without being read
    packaged = importlib.resources.files(PRESET_PACKAGE) / f"{name_or_file}.toml"
    if not PRESET_NAME.fullmatch(name_or_file) or not packaged.is_file():
        names = preset_names()
        hint = did_you_mean(name_or_file, names, cutoff=0.5)
        raise SettingError(f"unknown preset {name_or_file!r}{hint}; `bagmar presets` lists them")
    return Path(str(packaged))


def _read_settings_file(path: Path, what: str) -> dict[str, Any]:
    """The TOML tree of a regular file of at most MAX_SETTINGS_FILE bytes (never a device, FIFO or huge file)."""
    name = str(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise SettingError(f"{what} {name!r} not found") from None
    except OSError as exc:
        raise SettingError(f"{what} {name!r} cannot be read: {exc.strerror}") from None
    if stat.S_ISDIR(info.st_mode):
        raise SettingError(f"{what} {name!r} is a directory, expected a TOML file")
    if not stat.S_ISREG(info.st_mode):
        raise SettingError(f"{what} {name!r} is not a regular file, expected a TOML file")
    if info.st_size > MAX_SETTINGS_FILE:
        raise SettingError(f"{what} {name!r} is {info.st_size} bytes; settings files are at most 1 MiB")
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_SETTINGS_FILE + 1)
        if len(data) > MAX_SETTINGS_FILE:  # grew since stat
            raise SettingError(f"{what} {name!r} is larger than 1 MiB; settings files are at most 1 MiB")
        tree = tomllib.loads(data.decode("utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingError(f"{what} {name!r} cannot be read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingError(f"{what} {name!r} is not valid TOML: {exc}") from None
    except RecursionError:
        raise SettingError(f"{what} {name!r} nests tables or arrays too deeply") from None
    try:
        return migrate(tree)
    except ValueError as exc:
        raise SettingError(f"{what} {name!r}: {exc}") from None
