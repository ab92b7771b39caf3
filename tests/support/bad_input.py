"""What every bad-input test asserts: one `Error:` line, the expected exit code, no traceback, files unchanged."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any


def snapshot(*roots: Path) -> dict[str, str]:
    """Path -> SHA-256 of every file under `roots`."""
    files = [p for root in roots for p in root.rglob("*") if p.is_file()]
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def expand(args: list[str], paths: dict[str, Path]) -> list[str]:
    """Command-line arguments with `{name}` placeholders filled from `paths`."""
    return [arg.format(**{k: str(v) for k, v in paths.items()}) for arg in args]


def assert_one_error_line(outcome: Any, code: int, *fragments: str) -> str:
    """Exit `code`, exactly one `Error:` line (the last on stderr) holding every fragment, nothing unexpected;
    returns that line."""
    assert outcome.code == code, outcome.err
    assert "Traceback" not in outcome.err and "unexpected" not in outcome.err
    errors = [line for line in outcome.err.splitlines() if line.startswith("Error:")]
    assert errors == [outcome.err.strip().splitlines()[-1]], outcome.err
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]
