"""`bagmar demo` runs every step end to end, compares the two losses and says where everything went."""

import re
from pathlib import Path


def test_demo_one_epoch(cli, tmp_path: Path):
    out = cli("demo", "--out", tmp_path / "demo", "--epochs", "1", "--device", "cpu", "--seed", "1")
    assert out.code == 0, out.err
    assert len(out.out.splitlines()) == 1
    run = Path(out.out.strip())
    assert run.parent == tmp_path / "demo" / "runs" and run.name.startswith("digits_lt-seed1-")
    for name in ("best.safetensors", "metrics.jsonl", "config.toml", "tau-pn.png", "best.onnx", "best.onnx.json"):
        assert (run / name).is_file(), name
    assert len(list((run / "samples").glob("*.png"))) == 20
    (ce_run,) = (tmp_path / "demo" / "runs").glob("digits_lt_ce-seed1-*")
    assert (ce_run / "tau-pn.png").is_file() and 'name = "ce"' in (ce_run / "config.toml").read_text()
    assert "digits-LT test split, seed 1" in out.err
    for row in ("cross-entropy ", "cross-entropy + PN (τ = ", "BaGMar ", "BaGMar + PN (τ = "):
        assert re.search(rf"│ {re.escape(row)}.*│( +[\d.]+ │){{4}}", out.err), row
    claims = [line for line in out.err.splitlines() if "few-shot" in line and "CE + PN" in line]
    assert len(claims) == 1 and "bagmar predict" in out.err
    intervals = [line for line in out.err.splitlines() if "(95 % CI " in line]
    assert len(intervals) == 3, out.err
    assert intervals[0].startswith(("BaGMar raises few-shot", "BaGMar lowers few-shot", "BaGMar vs cross-entropy:"))
