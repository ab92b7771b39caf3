"""`bagmar demo` runs every step end to end and says where everything went."""

from pathlib import Path


def test_demo_one_epoch(cli, tmp_path: Path):
    out = cli("demo", "--out", tmp_path / "demo", "--epochs", "1", "--device", "cpu")
    assert out.code == 0, out.err
    run = Path(out.out.strip())
    assert run.parent == tmp_path / "demo" / "runs"
    for name in ("best.safetensors", "metrics.jsonl", "config.toml", "tau-pn.png", "best.onnx", "best.onnx.json"):
        assert (run / name).is_file(), name
    assert len(list((run / "samples").glob("*.png"))) == 20
    assert "many" in out.err and "with PN" in out.err and "bagmar predict" in out.err
