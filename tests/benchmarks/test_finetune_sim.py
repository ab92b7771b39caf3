"""benchmarks/finetune_sim.py end to end at a tiny size (1 epoch, a few real Fashion-MNIST images per class): the
upstream run, every downstream run with its loss and PN, the trainable counts, the tables, and a second run that
reads the first one's records back. The structure of the output, not its numbers."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from bagmar_cli.data import load_manifest
from bagmar_cli.data.sources.fashion_mnist import SYSTEM_DIR

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
TINY = ["--seeds", "0", "--methods", "scratch,linear,lora", "--epochs", "1", "--up-epochs", "1", "--jobs", "1"]
TINY += ["--up-per-class", "60", "--down-per-class", "70", "--test-per-class", "8", "--imb", "10"]

pytestmark = pytest.mark.skipif(
    not SYSTEM_DIR.is_dir(), reason=f"{SYSTEM_DIR} is absent (apt-get install dataset-fashion-mnist)"
)


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(BENCHMARKS))  # the script imports fmnist_lt from its own folder
    try:
        import finetune_sim

        yield finetune_sim
    finally:
        sys.path.remove(str(BENCHMARKS))


def _run(bench, out: Path, monkeypatch, capsys) -> str:
    monkeypatch.setattr(sys, "argv", ["finetune_sim.py", "--out", str(out), *TINY])
    bench.main()
    return capsys.readouterr().out


@pytest.mark.slow  # 11 s: seven tiny trainings
def test_tiny_simulation_writes_every_run_and_reads_them_back(bench, tmp_path, monkeypatch, capsys):
    first = _run(bench, tmp_path, monkeypatch, capsys)
    saved = json.loads((tmp_path / "results.json").read_text())
    names = sorted(run["name"] for run in saved["runs"])
    downstream = [
        f"down-70-imb10-test8-{m}-{loss}-e1-s0" for m in ("linear", "lora", "scratch") for loss in ("bagmar", "ce")
    ]
    assert names == sorted(["up-60-test8-upstream-ce-e1-s0", *downstream])
    assert set(saved["summary"]) == {"scratch", "linear", "lora"}
    for method in saved["summary"].values():
        assert set(method) == {"ce", "bagmar"} and {"plain", "pn", "tau"} <= set(method["ce"])
    # the downstream task never holds an upstream class; its test split is the official test images of 5-9
    up, down = (load_manifest(Path(saved["meta"][key])) for key in ("upstream", "downstream"))
    assert up.classes == ["0_T-shirt-top", "1_Trouser", "2_Pullover", "3_Dress", "4_Coat"]
    assert down.classes == ["5_Sandal", "6_Shirt", "7_Sneaker", "8_Bag", "9_Ankle boot"]
    assert down.splits["test"].counts == [8] * 5 and down.splits["val"].counts == [bench.VAL_PER_CLASS] * 5
    trainable = saved["meta"]["trainable"]
    assert trainable["scratch"][0] == trainable["scratch"][1]
    assert trainable["linear"][0] == 64 * 5 + 5  # the head alone
    assert trainable["linear"][0] < trainable["lora"][0] < trainable["lora"][1] / 10
    assert {"plain", "pn"} == set(saved["intervals"])
    assert "lora: BaGMar − CE" in saved["intervals"]["pn"] and "CE: lora − scratch" in saved["intervals"]["plain"]
    assert first.startswith("### Fine-tuning simulated") and "A simulation, not foundation-model numbers" in first
    for label in ("| from scratch | CE | plain |", "| linear probe | CE | plain |", "| LoRA | CE | plain |"):
        assert label in first
    assert first == (tmp_path / "results.md").read_text() + "\n"

    again = _run(bench, tmp_path, monkeypatch, capsys)  # every run is read back: the same table
    assert again == first
