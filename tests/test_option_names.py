"""The library speaks in setting and option names, never command-line flags: cli/ shows each backticked name as
the flag of the command that ran (cli/fields.py)."""

import ast
import re
from pathlib import Path

import bagmar_cli

FLAG = re.compile(r"(?<![\w-])--[a-z][a-z-]+")
# modules outside cli/ that name flags, each for a reason
ALLOWED = {
    "reference.py": "writes the command reference (docs/cli.md) from the CLI itself",
    "engine/distributed.py": "starts torchrun with torchrun's own flags",
    "engine/tensorboard.py": "says how to start TensorBoard (its own --logdir)",
}


def _strings(path: Path) -> list[tuple[int, str]]:
    """Every string constant in a module (f-string parts and docstrings included), with its line."""
    tree = ast.parse(path.read_text())
    return [(n.lineno, n.value) for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def test_no_module_outside_cli_names_a_command_line_flag():
    package = Path(bagmar_cli.__file__).parent
    found = [
        f"{path.relative_to(package)}:{line}: {FLAG.search(text).group()}"
        for path in sorted(package.rglob("*.py"))
        if path.relative_to(package).parts[0] != "cli" and path.relative_to(package).as_posix() not in ALLOWED
        for line, text in _strings(path)
        if FLAG.search(text)
    ]
    assert found == []


def test_the_modules_allowed_to_name_flags_still_do():
    package = Path(bagmar_cli.__file__).parent
    for module in ALLOWED:
        assert any(FLAG.search(text) for _, text in _strings(package / module)), module
