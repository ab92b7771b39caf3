"""`bagmar compare` through the real CLI on the session's tiny digits checkpoints."""

import shutil
from pathlib import Path

import pytest
from support.bad_input import assert_one_error_line

from bagmar_cli.checkpoint import load_checkpoint, update_metadata

METRICS = ("top1", "macro", "many", "medium", "few")
FAST = ("--resamples", "200", "--device", "cpu")


@pytest.fixture
def pair(digits_run: Path, tmp_path: Path) -> tuple[Path, Path]:
    """Private copies of the run's best and last checkpoints (two different models on the same data)."""
    best, last = tmp_path / "best.safetensors", tmp_path / "last.safetensors"
    shutil.copy(digits_run, best)
    shutil.copy(digits_run.parent / "last.safetensors", last)
    return best, last


def test_a_checkpoint_against_itself_is_zero_with_p_one(cli, pair):
    best, _ = pair
    copy = best.with_name("copy.safetensors")
    shutil.copy(best, copy)
    outcome = cli("compare", best, copy, "--json", *FAST)
    assert outcome.code == 0, outcome.err
    result = outcome.json()
    for name in METRICS:
        if result[name]["a"] is None:  # a shot group with no classes in this data
            continue
        assert result[name]["diff"] == 0.0 and result[name]["ci"] == [0.0, 0.0] and result[name]["p_value"] == 1.0
        assert result[name]["distinguishable"] is False
    assert result["top1"]["test"] == "exact McNemar"
    assert "cannot tell them apart at 95 %" in outcome.err and "A − B" in outcome.err


def test_values_are_evals_and_a_seeded_rerun_is_identical(cli, pair):
    best, last = pair
    first = cli("compare", best, last, "--json", "--seed", "3", *FAST)
    assert first.code == 0, first.err
    result = first.json()
    evaluated = cli("eval", best, "--no-plots", "--json").json()
    for name in METRICS:
        assert result[name]["a"] == pytest.approx(evaluated[name])
        if result[name]["a"] is not None:
            assert result[name]["diff"] == pytest.approx(result[name]["a"] - result[name]["b"])
            low, high = result[name]["ci"]
            assert low <= high and 0 <= result[name]["p_value"] <= 1
    assert result["comparison"]["split"] == "test" and result["comparison"]["seed"] == 3
    assert cli("compare", best, last, "--json", "--seed", "3", *FAST).out == first.out


def test_tau_auto_applies_each_sides_own_record(cli, pair):
    best, last = pair
    assert cli("tune-tau", best, "--json").code == 0
    outcome = cli("compare", best, last, "--tau", "auto", "--json", *FAST)
    assert outcome.code == 0, outcome.err
    result = outcome.json()
    assert result["comparison"]["posthoc_a"][0]["source"] == "recorded"
    assert result["comparison"]["posthoc_b"] == [None]  # last.safetensors was never tuned
    tuned = cli("eval", best, "--tau", "auto", "--no-plots", "--json").json()
    assert result["top1"]["a"] == pytest.approx(tuned["top1"])


def test_groups_of_seeds_with_vs_and_a_plot(cli, pair, tmp_path):
    best, last = pair
    best2, last2 = tmp_path / "b2.safetensors", tmp_path / "l2.safetensors"
    shutil.copy(best, best2)
    shutil.copy(last, last2)
    plot = tmp_path / "diff.png"
    outcome = cli("compare", best, last, "--vs", last2, best2, "--json", "--plot", plot, *FAST)
    assert outcome.code == 0, outcome.err
    top1 = outcome.json()["top1"]
    assert top1["test"] == "hierarchical bootstrap" and len(top1["a_seeds"]) == len(top1["b_seeds"]) == 2
    assert top1["diff"] == pytest.approx(0.0, abs=1e-12)  # the same two models on each side
    assert sorted(top1["a_seeds"]) == pytest.approx(sorted(top1["b_seeds"]))
    assert top1["ci"][0] <= 0 <= top1["ci"][1]
    assert plot.read_bytes()[:4] == b"\x89PNG"
    assert outcome.json()["comparison"]["plot"] == str(plot)


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ("dataset", "datasets differ (digits vs fashion_mnist)"),
        ("train_counts", "trained on different per-class counts"),
        ("classes", "classes differ"),
    ],
)
def test_mismatched_checkpoints_are_one_error_line(cli, pair, digits_data, change, fragment):
    best, last = pair
    meta = load_checkpoint(last, tensors=False).meta
    if change == "dataset":
        change = {"dataset": meta.dataset.model_dump(mode="json") | {"name": "fashion_mnist"}}
    elif change == "train_counts":
        change = {"train_counts": [count + 1 for count in meta.train_counts]}
    elif change == "classes":
        change = {"classes": [f"c{i}" for i in range(len(meta.classes))]}
    update_metadata(last, change)
    outcome = cli("compare", best, last, "--data", digits_data, *FAST)
    assert_one_error_line(outcome, 2, "cannot compare", fragment)
    assert outcome.out == ""


@pytest.mark.parametrize(
    ("words", "fragment"),
    [
        (["{a}"], "compare takes two checkpoints (A B) or two groups"),
        (["{a}", "{a}", "{a}"], "compare takes two checkpoints"),
        (["{a}", "--vs"], "one --vs with checkpoints on both sides"),
        (["{a}", "--vs", "{a}", "--vs", "{a}"], "one --vs"),
        (["{a}", "{a}", "--jsn"], "no such option: --jsn"),
        (["{a}", "{a}", "--vs", "{a}"], "is given twice on one side"),
        (["{a}", "{a}", "--level", "95"], "--level 95: expected a number between 0 and 1"),
    ],
)
def test_bad_command_lines_are_usage_errors(cli, pair, words, fragment):
    best, _ = pair
    outcome = cli("compare", *[word.format(a=best) for word in words])
    assert_one_error_line(outcome, 2, fragment)
