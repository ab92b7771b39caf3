"""cli/train.py: the command line an interrupted run suggests to continue it."""

from __future__ import annotations

import shlex
from pathlib import Path

from bagmar_cli.cli.train import resume_command


def test_resume_command_quotes_the_directory() -> None:
    out = Path("/runs/my run")
    command = resume_command(out)
    assert shlex.split(command) == ["bagmar", "train", "--out", "/runs/my run", "--resume"]
