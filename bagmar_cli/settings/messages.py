"""How a settings error reads: one line naming the setting by its dotted key (and a "did you mean")."""

from __future__ import annotations

from typing import Any, get_args

from pydantic import BaseModel, ValidationError

from bagmar_cli.choices import did_you_mean


def _section(annotation: Any) -> Any:
    """The model a field holds: the annotation itself, or the model of `Model | None` ([stage2]'s sections)."""
    if hasattr(annotation, "model_fields"):
        return annotation
    models = [arg for arg in get_args(annotation) if hasattr(arg, "model_fields")]
    return models[0] if len(models) == 1 else annotation


def _fields_at(loc: tuple[Any, ...], root: type[BaseModel]) -> list[str]:
    model: Any = root
    for part in loc:
        field = model.model_fields.get(part) if hasattr(model, "model_fields") else None
        if field is None or not hasattr(_section(field.annotation), "model_fields"):
            break
        model = _section(field.annotation)
    return list(model.model_fields)


def _known_fields(loc: tuple[str, ...], root: type[BaseModel]) -> tuple[str, ...]:
    model: Any = root
    known: list[str] = []
    for part in loc:
        fields = getattr(model, "model_fields", None)
        if fields is None or part not in fields:
            break
        known.append(part)
        model = _section(fields[part].annotation)
    return tuple(known) or loc


def describe(exc: ValidationError, tree: dict[str, Any], root: type[BaseModel], prefix: str = "") -> str:
    """One line for the first error; `prefix` goes before every key (the stage2. of a [stage2] change)."""
    error = exc.errors()[0]
    loc = tuple(p for p in error["loc"] if isinstance(p, str))
    if error["type"] != "extra_forbidden":
        loc = _known_fields(loc, root)  # a union's member ("constrained-int") is no part of the key
    key = prefix + ".".join(loc)
    if error["type"] == "extra_forbidden":
        hint = did_you_mean(loc[-1], _fields_at(loc[:-1], root), cutoff=0.5)
        return f"unknown setting {key!r}{hint}"
    value = error.get("input")
    if error["type"] == "value_error" and isinstance(value, dict):  # a check across a section's keys
        message = error["msg"].removeprefix("Value error, ")
        return f"settings {key}: {message}" if loc else message  # the whole tree's check words its own keys
    return f"setting {key or 'settings'} = {value!r}: {error['msg'].lower()}"
