"""Stopping or failing a run at a chosen epoch through the training loop's public hooks (engine/train/hooks.py)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import pytest

from bagmar_cli.engine.train import recipe
from bagmar_cli.engine.train.hooks import Hooks

_train = recipe.train


def with_hooks(patch: pytest.MonkeyPatch, **hooks: Any) -> None:
    """Every run the command line starts (in this process) calls these `Hooks`, until `patch` is undone."""
    patch.setattr(recipe, "train", functools.partial(_train, hooks=Hooks(**hooks)))


def raise_at_call(n: int, error: BaseException | type[BaseException] = KeyboardInterrupt) -> Callable[..., None]:
    """A hook that raises `error` on its `n`th call (counted over every stage of the run) and does nothing before."""
    calls: list[int] = []

    def hook(*args: object) -> None:
        calls.append(1)
        if len(calls) == n:
            raise error

    return hook
