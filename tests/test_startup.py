"""What a command imports before it reads its input: not scikit-learn, SciPy or matplotlib, which cost a second or
more at every start (and in every torchrun rank) and are needed only to prepare digits or to draw a plot."""

from __future__ import annotations

import json
import subprocess
import sys

COMMAND_MODULES = [
    "bagmar_cli.cli.app",
    "bagmar_cli.data",
    "bagmar_cli.engine.train.recipe",
    "bagmar_cli.engine.evaluate.evaluator",
    "bagmar_cli.engine.evaluate.tuning",
    "bagmar_cli.engine.evaluate.compare",
    "bagmar_cli.engine.serve.predictor",
    "bagmar_cli.plots",
]
HEAVY = ["sklearn", "scipy", "matplotlib"]


def test_commands_import_no_plotting_or_scikit_learn_until_they_need_them() -> None:
    imports = [f"import {name}" for name in COMMAND_MODULES]
    code = "; ".join([*imports, "import json, sys", "print(json.dumps(sorted(sys.modules)))"])
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    loaded = {name.split(".")[0] for name in json.loads(done.stdout)}
    assert loaded.isdisjoint(HEAVY), sorted(loaded & set(HEAVY))
    assert "torch" in loaded  # the check runs on the real import graph, not an empty one
