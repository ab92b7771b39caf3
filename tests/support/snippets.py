"""Code blocks of the docs, written out so that tests run them as a user would."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def serving_snippet(folder: Path) -> Path:
    """docs/export.md's `serve.py` (serving an export with onnxruntime, Pillow and numpy), written into `folder`."""
    page = (ROOT / "docs" / "export.md").read_text(encoding="utf-8")
    found = re.search(r"Serving without bagmar.*?```python\n(.*?)```", page, re.S)
    assert found, "docs/export.md has no serving snippet"
    path = folder / "serve.py"
    path.write_text(found.group(1), encoding="utf-8")
    return path
