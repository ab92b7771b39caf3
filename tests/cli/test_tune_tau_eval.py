"""tune-tau and eval agree: the τ recorded is the τ eval applies, with the same accuracy on the same split."""

import shutil
from pathlib import Path

import pytest

from bagmar_cli.checkpoint import load_checkpoint


@pytest.fixture
def ckpt(digits_run: Path, tmp_path: Path) -> Path:
    """A private copy of the session's checkpoint (tune-tau --write modifies its metadata)."""
    copy = tmp_path / "best.safetensors"
    shutil.copy(digits_run, copy)
    return copy


@pytest.mark.parametrize("method", ["pn", "tau-norm", "logit-adjust"])
def test_tune_tau_accuracy_equals_eval_at_that_tau(cli, ckpt: Path, method: str):
    tuned = cli("tune-tau", ckpt, "--method", method, "--split", "val", "--no-write", "--json")
    assert tuned.code == 0, tuned.err
    report = tuned.json()
    assert report["method"] == method and report["split"] == "val" and len(report["grid"]) == 21
    for row in (report["grid"][0], report["grid"][13], report["best"]):
        evaluated = cli(
            "eval", ckpt, "--split", "val", "--tau", str(row["tau"]), "--method", method, "--no-plots", "--json"
        )
        assert evaluated.code == 0, evaluated.err
        result = evaluated.json()
        for key in ("top1", "many", "medium", "few", "macro"):
            assert result[key] == pytest.approx(row[key]), (row["tau"], key)


def test_tau_zero_is_plain_accuracy(cli, ckpt: Path):
    grid = cli("tune-tau", ckpt, "--no-write", "--json").json()["grid"]
    plain = cli("eval", ckpt, "--split", "val", "--no-plots", "--json").json()
    assert grid[0]["tau"] == 0.0 and grid[0]["top1"] == pytest.approx(plain["top1"])


def test_write_keeps_tensors_and_eval_uses_recorded_tau(cli, ckpt: Path):
    before = load_checkpoint(ckpt).tensors
    tuned = cli("tune-tau", ckpt, "--json")
    assert tuned.code == 0 and tuned.json()["written"]
    after = load_checkpoint(ckpt)
    assert before.keys() == after.tensors.keys()
    assert all(before[k].numpy().tobytes() == after.tensors[k].numpy().tobytes() for k in before)
    recorded = after.meta.posthoc
    assert recorded.method == "pn" and recorded.tau == tuned.json()["best"]["tau"]
    assert len(recorded.c) == 10 and recorded.split == "val"
    evaluated = cli("eval", ckpt, "--split", "val", "--tau", "auto", "--no-plots", "--json").json()
    assert evaluated["posthoc"] == {"method": "pn", "tau": recorded.tau, "source": "recorded"}
    assert evaluated["top1"] == pytest.approx(tuned.json()["best"]["top1"])
    assert evaluated["tuned_on_reported_split"] is True


def test_tune_tau_writes_its_plot(cli, ckpt: Path):
    assert cli("tune-tau", ckpt).code == 0
    assert (ckpt.parent / "tau-pn.png").stat().st_size > 1000


def test_no_write_writes_nothing(cli, ckpt: Path):
    plot = ckpt.parent / "tau-pn.png"
    plot.write_bytes(b"the user's plot")
    before = ckpt.read_bytes()
    done = cli("tune-tau", ckpt, "--no-write", "--json")
    assert done.code == 0 and done.json()["written"] is False and done.json()["plot"] is None
    assert plot.read_bytes() == b"the user's plot" and ckpt.read_bytes() == before


def test_eval_several_checkpoints_gives_mean_and_std(cli, ckpt: Path, tmp_path: Path):
    other = tmp_path / "other.safetensors"
    shutil.copy(ckpt, other)
    out = cli("eval", ckpt, other, "--no-plots", "--json").json()
    assert len(out["checkpoints"]) == 2
    assert out["summary"]["top1"] == {"mean": pytest.approx(out["checkpoints"][0]["top1"]), "std": 0.0}


def test_eval_reports_calibration_priors_and_plots(cli, ckpt: Path, tmp_path: Path):
    out = cli("eval", ckpt, "--plots", tmp_path / "plots", "--prior", "--json")
    assert out.code == 0, out.err
    report = out.json()
    assert 0 <= report["ece"] <= 1 and report["nll"] > 0
    assert report["shifted_priors"]["uniform"] == pytest.approx(report["macro"])
    assert {Path(p).name for p in report["plots"].values()} == {
        "eval-test-raw-per-class.png",
        "eval-test-raw-confused.png",
        "eval-test-raw-reliability.png",
    }
    assert "backward-50" in out.err


def test_eval_with_and_without_pn_keeps_both_sets_of_plots(cli, ckpt: Path, tmp_path: Path):
    """The method and τ are in the plots' names, so a PN evaluation does not overwrite the raw one's."""
    folder = tmp_path / "plots"
    for extra in ([], ["--tau", "1.2", "--method", "pn"], ["--tau", "0.5", "--method", "logit-adjust"]):
        assert cli("eval", ckpt, "--plots", folder, *extra).code == 0
    kinds = ("per-class", "confused", "reliability")
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        f"eval-test-{tag}-{kind}.png" for tag in ("raw", "pn-tau1.2", "logit-adjust-tau0.5") for kind in kinds
    )


@pytest.mark.parametrize("grid", ["abc", "0:2", "2:0:0.1", "0:2:0", "0:2:-1", "nan"])
def test_bad_grid_is_a_usage_error(cli, ckpt: Path, grid: str):
    before = ckpt.read_bytes()
    out = cli("tune-tau", ckpt, "--grid", grid)
    assert out.code == 2 and out.err.startswith("Error:") and "grid" in out.err
    assert ckpt.read_bytes() == before
