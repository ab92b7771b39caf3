"""Raw settings trees (nested dicts, as TOML gives them): nesting a dotted key, flattening, merging."""

from __future__ import annotations

from typing import Any


def nest(dotted: str, value: Any) -> dict[str, Any]:
    """`section.key` and a value as {"section": {"key": value}}."""
    *parents, leaf = dotted.split(".")
    tree: dict[str, Any] = {leaf: value}
    for part in reversed(parents):
        tree = {part: tree}
    return tree


def flatten_settings(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A raw settings tree as {"section.key": value}, without the top-level description."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat |= flatten_settings(value, f"{prefix}{key}.")
        elif key != "description" or prefix:
            flat[f"{prefix}{key}"] = value
    return flat


def merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """`top` over `base`, table by table (a later source wins key by key)."""
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged
