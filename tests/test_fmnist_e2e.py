"""prepare -> train -> tune-tau -> eval --tau auto through the real CLI on the real Fashion-MNIST files."""

import json
from pathlib import Path

import pytest

from bagmar_cli.data.sources.fashion_mnist import SYSTEM_DIR

pytestmark = pytest.mark.skipif(
    not SYSTEM_DIR.is_dir(), reason=f"{SYSTEM_DIR} is absent (apt-get install dataset-fashion-mnist)"
)


def test_fashion_mnist_lt_end_to_end(cli, tmp_path: Path):
    prepared = cli("prepare", "fashion_mnist", "--imb", "100", "--val-per-class", "10", "--out", tmp_path / "d")
    assert prepared.code == 0, prepared.err
    data = Path(prepared.out.strip())
    splits = json.loads((data / "manifest.json").read_text())["splits"]
    # The standard imb-100 counts (6,000 down to 60), class 0 capped by the 10 val images its pool lends.
    assert splits["train"]["counts"][0] == 5990 and splits["train"]["counts"][-1] == 60
    assert (splits["val"]["n"], splits["test"]["n"]) == (100, 10_000)

    # No --preset: the manifest's default, fashion_mnist_lt (ResNet-8 with a stride-2 stem, BaGMar).
    trained = cli("train", "--data", data, "--out", tmp_path / "run", "--epochs", "1", "--device", "cpu")
    assert trained.code == 0, trained.err
    ckpt = Path(trained.out.strip())
    assert ckpt.is_file() and "val top-1" in trained.err

    tuned = cli("tune-tau", ckpt, "--json")
    assert tuned.code == 0, tuned.err
    search = tuned.json()
    assert (search["method"], search["split"], search["tuned_on_test"], search["written"]) == ("pn", "val", False, True)

    evaluated = cli("eval", ckpt, "--tau", "auto", "--json", "--no-plots")
    assert evaluated.code == 0, evaluated.err
    report = evaluated.json()
    assert report["posthoc"] == {"method": "pn", "tau": search["best"]["tau"], "source": "recorded"}
    assert (report["split"], report["n"], report["tuned_on_reported_split"]) == ("test", 10_000, False)
    assert report["top1"] > 0.4  # one epoch is far above chance (0.1): labels and images line up
