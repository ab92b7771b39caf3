"""Optional packages (the `finetune` extra: peft, open_clip): imported where a setting needs one."""

from __future__ import annotations

import importlib
from types import ModuleType

from bagmar_cli.errors import SettingError

INSTALL = "pip install 'bagmar[finetune]'"


def require(module: str, setting: str, value: str) -> ModuleType:
    """Import `module`, or one SettingError naming the `setting` (= `value`) that needs it and how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise SettingError(
            f'`{setting}` = "{value}" needs the optional package {module}, which is not installed: {INSTALL}'
        ) from None
