"""data/ speaks in option names, never command-line flags: cli/ shows each backticked name as its flag."""

import ast
import re
from pathlib import Path

import bagmar_cli.data

FLAG = re.compile(r"(?<![\w-])--[a-z][a-z-]+")


def _strings(path: Path) -> list[tuple[int, str]]:
    """Every string constant in a module (f-string parts included), with its line."""
    tree = ast.parse(path.read_text())
    return [(n.lineno, n.value) for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def test_no_module_of_data_names_a_command_line_flag():
    package = Path(bagmar_cli.data.__file__).parent
    found = [
        f"{path.relative_to(package)}:{line}: {FLAG.search(text).group()}"
        for path in sorted(package.rglob("*.py"))
        for line, text in _strings(path)
        if FLAG.search(text)
    ]
    assert found == []
