"""Bad input around runs, settings and datasets through the real CLI: the one `Error:` line, the exit code, and
user files left byte-identical; and the commands that used to succeed while doing the wrong thing.
"""

from __future__ import annotations

import json
import shutil
import tomllib
from pathlib import Path

import pytest
from support.bad_input import assert_one_error_line, expand, snapshot
from support.training import raise_at_call, with_hooks

DEEP = 1000  # nesting that exhausted Python's recursion limit in the TOML parser


@pytest.fixture(scope="module")
def paths(tmp_path_factory, digits_data: Path, digits_run: Path) -> dict[str, Path]:
    """Files for the matrix below; `{name}` in a case is replaced by its path."""
    bad = tmp_path_factory.mktemp("bad-runs")
    files = {"data": digits_data, "run": digits_run.parent, "bad": bad}

    def write(name: str, content: str) -> None:
        (bad / name).write_text(content)
        files[name.split(".", maxsplit=1)[0]] = bad / name

    write("lr_inf.toml", "[optim]\nlr = inf\n")
    write("lambda_nan.toml", "[loss]\nlambda1 = nan\n")
    write("preset_wd_inf.toml", "[optim]\nweight_decay = +inf\n")
    write("deep_array.toml", "[optim]\nlr = " + "[" * DEEP + "]" * DEEP + "\n")
    write("deep_table.toml", "x = " + "{a = " * DEEP + "1" + "}" * DEEP + "\n")
    write("huge.toml", "# padding\n" * 120_000)  # 1.2 MB of valid TOML
    write("a_file", "not a directory")
    write("lr_half.toml", "[optim]\nlr = 0.5\n")
    evil = Path(shutil.copytree(digits_data, bad / "evil"))
    manifest = json.loads((evil / "manifest.json").read_text())
    manifest["default_preset"] = "../../../../etc/passwd"
    (evil / "manifest.json").write_text(json.dumps(manifest))
    files["evil"] = evil
    files["other_data"] = Path(shutil.copytree(digits_data, bad / "other_data"))
    edited = Path(shutil.copytree(digits_run.parent, bad / "edited_run"))
    config = (edited / "config.toml").read_text()
    assert "lr = 0.1\n" in config
    (edited / "config.toml").write_text(config.replace("lr = 0.1\n", "lr = 0.5\n"))
    files["edited_run"] = edited
    return files


TRAIN = ["train", "--data", "{data}", "--out", "{bad}/run", "--epochs", "1", "--device", "cpu"]
RESUME = ["train", "--out", "{run}", "--resume"]
CASES = {
    # non-finite numbers, wherever settings come from
    "set-lr-inf": ([*TRAIN, "--set", "optim.lr=inf"], 2, "setting optim.lr = inf: input should be a finite number"),
    "set-lr-nan": ([*TRAIN, "--set", "optim.lr=nan"], 2, "setting optim.lr = nan: input should be a finite number"),
    "set-lambda-minus-inf": ([*TRAIN, "--set", "loss.lambda1=-inf"], 2, "setting loss.lambda1 = -inf: input should"),
    "config-lr-inf": ([*TRAIN, "--config", "{lr_inf}"], 2, "setting optim.lr = inf: input should be a finite number"),
    "config-lambda-nan": ([*TRAIN, "--config", "{lambda_nan}"], 2, "setting loss.lambda1 = nan: input should be a"),
    "preset-weight-decay-inf": (
        [*TRAIN, "--preset", "{preset_wd_inf}"],
        2,
        "setting optim.weight_decay = inf: input should be a finite number",
    ),
    # settings files that are not small regular TOML files
    "config-deep-array": ([*TRAIN, "--config", "{deep_array}"], 2, "deep_array.toml' nests tables or arrays too"),
    "config-deep-table": ([*TRAIN, "--config", "{deep_table}"], 2, "deep_table.toml' nests tables or arrays too"),
    "config-dev-zero": ([*TRAIN, "--config", "/dev/zero"], 2, "config file '/dev/zero' is not a regular file"),
    "preset-dev-zero": ([*TRAIN, "--preset", "/dev/zero"], 2, "preset '/dev/zero' is not a regular file"),
    "config-over-1-mib": ([*TRAIN, "--config", "{huge}"], 2, "bytes; settings files are at most 1 MiB"),
    "set-deep-value": ([*TRAIN, "--set", "optim.lr=" + "[" * DEEP + "]" * DEEP], 2, "--set optim.lr: the value is"),
    # a manifest names its default preset, it never points at a file
    "manifest-default-preset-is-a-path": (
        ["train", "--data", "{evil}", "--out", "{bad}/run"],
        1,
        "manifest.json does not match the manifest schema: default_preset: Value error, must be the name of a",
    ),
    # --out that is a file: a usage error for both commands that write a directory
    "out-is-a-file-prepare": (["prepare", "digits", "--out", "{a_file}"], 2, "a_file exists and is not a directory"),
    "out-is-a-file-train": ([*TRAIN[:4], "{a_file}", *TRAIN[5:]], 2, "a_file exists and is not a directory"),
    # a resume continues the recorded run; what would change it is refused by name
    "resume-without-out": (["train", "--resume", "--data", "{data}"], 2, "--resume needs --out RUN_DIR"),
    "resume-other-epochs": ([*RESUME, "--epochs", "5"], 2, "train.epochs = 5 would change it (recorded 2)"),
    "resume-other-seed": ([*RESUME, "--seed", "3"], 2, "train.seed = 3 would change it (recorded 0)"),
    "resume-other-batch-size": ([*RESUME, "--batch-size", "16"], 2, "train.batch_size = 16 would change it"),
    "resume-other-lr-set": ([*RESUME, "--set", "optim.lr=0.5"], 2, "optim.lr = 0.5 would change it (recorded 0.1)"),
    "resume-other-lr-config": ([*RESUME, "--config", "{lr_half}"], 2, "optim.lr = 0.5 would change it"),
    "resume-other-preset": ([*RESUME, "--preset", "cifar10_lt"], 2, "would change it (recorded"),
    "resume-other-data": ([*RESUME, "--data", "{other_data}"], 2, "data.root = "),
    "resume-and-overwrite": ([*RESUME, "--overwrite"], 2, "--resume continues the run in --out and --overwrite"),
    "resume-edited-config": (
        ["train", "--out", "{edited_run}", "--resume"],
        1,
        "config.toml says optim.lr = 0.5 but",
    ),
    "resume-names-what-may-change": (
        [*RESUME, "--epochs", "5"],
        2,
        "only train.device, data.num_workers and train.log_every may differ on a resume",
    ),
}


@pytest.mark.parametrize(("args", "code", "fragment"), CASES.values(), ids=CASES.keys())
def test_bad_input_is_one_error_line_and_changes_nothing(cli, paths, args, code, fragment, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BAGMAR_DATA_DIR", str(tmp_path / "data"))
    user_files = (paths["bad"], paths["data"], paths["run"])
    before = snapshot(*user_files)
    outcome = cli(*expand(args, paths))
    assert_one_error_line(outcome, code, fragment)
    assert outcome.out == ""
    assert snapshot(*user_files) == before
    assert not (paths["bad"] / "run").exists()
    assert list(tmp_path.iterdir()) == []


# -- --overwrite replaces only what bagmar wrote ---------------------------------------------------------------


def test_prepare_overwrite_keeps_a_folder_that_merely_holds_a_manifest(cli, tmp_path):
    work = tmp_path / "w"
    (work / "src").mkdir(parents=True)
    (work / "manifest.json").write_text('{"name":"app"}\n')
    (work / "src" / "app.js").write_text("x\n")
    before = snapshot(work)
    outcome = cli("prepare", "digits", "--imb", "10", "--out", work, "--overwrite")
    assert_one_error_line(outcome, 1, "--overwrite replaces only a bagmar dataset directory")
    assert f"{work}/manifest.json does not match the manifest schema" in outcome.err
    assert snapshot(work) == before and sorted(p.name for p in tmp_path.iterdir()) == ["w"]


def test_prepare_overwrite_keeps_a_dataset_holding_a_users_file(cli, digits_data, tmp_path):
    work = Path(shutil.copytree(digits_data, tmp_path / "w"))
    (work / "NOTES.md").write_text("my notes\n")
    (work / "src").mkdir()
    before = snapshot(work)
    outcome = cli("prepare", "digits", "--imb", "10", "--out", work, "--overwrite")
    assert_one_error_line(outcome, 1, f"{work} holds files bagmar did not write ({work}/NOTES.md, {work}/src)")
    assert snapshot(work) == before and (work / "src").is_dir()


def test_train_overwrite_keeps_a_run_directory_holding_a_users_file(cli, digits_data, digits_run, tmp_path):
    run = Path(shutil.copytree(digits_run.parent, tmp_path / "run"))
    (run / "NOTES.md").write_text("my notes\n")
    before = snapshot(run)
    outcome = cli("train", "--data", digits_data, "--out", run, "--epochs", "1", "--overwrite")
    assert_one_error_line(outcome, 2, f"--out {run} holds files bagmar did not write ({run}/NOTES.md)")
    assert snapshot(run) == before


def test_train_overwrite_replaces_every_file_of_the_old_run(cli, digits_data, digits_run, tmp_path):
    run = Path(shutil.copytree(digits_run.parent, tmp_path / "run"))
    (run / "eval-test-per-class.png").write_bytes(b"a plot of the old weights")
    (run / "best.onnx").write_bytes(b"an export of the old weights")
    outcome = cli(
        "train", "--data", digits_data, "--out", run, "--epochs", "1", "--device", "cpu", "--overwrite",
        "--set", "model.backbone=resnet20_cifar", "--set", "data.val_split=test",
    )  # fmt: skip
    assert outcome.code == 0, outcome.err
    assert sorted(p.name for p in run.iterdir() if not p.name.startswith("events.out.tfevents.")) == [
        "best.safetensors",
        "config.toml",
        "last.safetensors",
        "metrics.jsonl",
    ]
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1
    assert len(list(run.glob("events.out.tfevents.*"))) <= 1  # the old run's TensorBoard points went with it


# -- settings: precedence and what config.toml records ---------------------------------------------------------


@pytest.mark.parametrize("with_preset", [False, True], ids=["dataset-default-preset", "given-preset"])
def test_precedence_defaults_preset_config_set_flags(cli, digits_data, tmp_path, with_preset):
    """defaults < preset (given, or the dataset's default) < --config < --set < flags."""
    config = tmp_path / "s.toml"
    config.write_text("[optim]\nlr = 0.05\n[train]\nepochs = 7\nseed = 4\n[model]\nbackbone = 'resnet20_cifar'\n")
    preset = tmp_path / "mine.toml"
    preset.write_text("[data]\nhflip = false\ncrop_padding = 2\n[loss]\nname = 'focal'\n[optim]\nlr = 0.3\n")
    chosen = ["--preset", preset] if with_preset else []
    run = tmp_path / "run"
    outcome = cli(
        "train", "--data", digits_data, "--out", run, "--device", "cpu", *chosen, "--config", config,
        "--set", "train.seed=5", "--set", "train.epochs=9", "--epochs", "1",
    )  # fmt: skip
    assert outcome.code == 0, outcome.err
    recorded = tomllib.loads((run / "config.toml").read_text())
    assert recorded["optim"]["lr"] == 0.05  # config over preset
    assert recorded["train"]["seed"] == 5 and recorded["train"]["epochs"] == 1  # --set over config, flag over --set
    assert recorded["optim"]["momentum"] == 0.9  # a default nobody set
    if with_preset:
        assert (recorded["loss"]["name"], recorded["data"]["crop_padding"]) == ("focal", 2)
    else:  # digits_lt, the dataset's default preset, still applies under --config
        assert (recorded["loss"]["name"], recorded["data"]["crop_padding"]) == ("bagmar", 1)
    assert recorded["data"]["hflip"] is False
    # the dataset actually read, not a preset's or the defaults' guess
    assert recorded["data"]["root"] == str(digits_data.resolve())
    assert (recorded["data"]["imb"], recorded["data"]["val_per_class"]) == (10.0, 10)


# -- resume ---------------------------------------------------------------------------------------------------


def test_resume_that_agrees_or_changes_only_device_and_workers_is_accepted(cli, digits_data, digits_run, tmp_path):
    run = Path(shutil.copytree(digits_run.parent, tmp_path / "run"))
    config = (run / "config.toml").read_bytes()
    same = ["--data", digits_data, "--epochs", "2", "--set", "model.backbone=resnet20_cifar", "--preset", "digits_lt"]
    for extra in (same, ["--device", "auto", "--set", "data.num_workers=1"]):
        outcome = cli("train", "--out", run, "--resume", *extra)
        assert outcome.code == 0, outcome.err
        assert outcome.out.strip() == str(run / "best.safetensors")
        assert (run / "config.toml").read_bytes() == config  # never rewritten on a resume


def test_an_interrupt_names_the_command_that_was_interrupted(cli, monkeypatch):
    def interrupt() -> list[str]:
        raise KeyboardInterrupt

    monkeypatch.setattr("bagmar_cli.cli.presets.preset_names", interrupt)
    outcome = cli("presets")
    assert outcome.code == 130 and outcome.err.strip() == "Error: interrupted"


def test_an_interrupt_before_the_first_checkpoint_says_there_is_nothing_to_resume(
    cli, digits_data, tmp_path, monkeypatch
):
    with_hooks(monkeypatch, on_epoch_start=raise_at_call(1))
    outcome = cli("train", "--data", digits_data, "--out", tmp_path / "run", "--device", "cpu")
    assert outcome.code == 130
    assert outcome.err.strip().splitlines()[-1] == (
        "Error: interrupted before the first epoch completed, so there is no checkpoint to resume; "
        "start again with the same command"
    )
    assert not (tmp_path / "run").exists()


def test_resuming_from_a_bundle_is_one_error_and_changes_nothing(cli, digits_run, tmp_path):
    """A bundle in place of last.safetensors has no training state: one Error line naming it, files unchanged."""
    run = Path(shutil.copytree(digits_run.parent, tmp_path / "run"))
    bundle = tmp_path / "b.bundle.safetensors"
    assert cli("export", run / "best.safetensors", "--format", "safetensors", "--out", bundle, "--no-check").code == 0
    shutil.copyfile(bundle, run / "last.safetensors")
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    outcome = cli("train", "--out", run, "--resume")
    assert outcome.code == 1, outcome.err
    lines = outcome.err.strip().splitlines()
    assert lines[-1].startswith("Error: ") and "records no training state" in lines[-1]
    assert [line for line in lines if line.startswith("Error:")] == [lines[-1]] and "Traceback" not in outcome.err
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
