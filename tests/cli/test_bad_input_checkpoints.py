"""Bad checkpoints, sidecars, τ values and output streams through the real CLI: one `Error:` line naming the file,
the field and what was expected, no traceback, nothing damaged; and what a stranger's file must not do.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save
from support.bad_input import assert_one_error_line
from support.snippets import serving_snippet

from bagmar_cli import __version__
from bagmar_cli.console import result_json
from bagmar_cli.errors import WriteError

FIXTURE = Path(__file__).parents[1] / "fixtures" / "checkpoints" / "v1-tuned.safetensors"
ROOT = Path(__file__).parents[2]
CLASSES = [str(i) for i in range(10)]


def with_metadata(target: Path, **changes: object) -> Path:
    """A copy of the fixture checkpoint with some metadata values replaced (raw strings are written as given)."""
    with safe_open(str(FIXTURE), framework="pt") as handle:
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 (safe_open has no __iter__)
        metadata = handle.metadata()
    for key, value in changes.items():
        if value is None:
            metadata.pop(key)
        else:
            metadata[key] = value if isinstance(value, str) else json.dumps(value)
    target.write_bytes(save(tensors, metadata=metadata))
    return target


def _meta(key: str) -> dict:
    with safe_open(str(FIXTURE), framework="pt") as handle:
        return json.loads(handle.metadata()[key])


POSTHOC = _meta("posthoc")
MODEL = _meta("model")
SETTINGS = _meta("settings")

BAD_METADATA = {
    "no-model": ({"model": None}, "field model: Field required"),
    "classes-a-number": ({"classes": 7}, "field classes: Input should be a valid list"),
    "five-classes-for-ten-outputs": ({"classes": CLASSES[:5]}, "classes has 5 entries for the model's 10 outputs"),
    "c-wrong-length": ({"posthoc": POSTHOC | {"c": [1.0, 2.0, 3.0]}}, "posthoc.c has 3 values for the model's 10"),
    "c-all-zeros": ({"posthoc": POSTHOC | {"c": [0.0] * 10}}, "c is all zeros"),
    "c-negative": ({"posthoc": POSTHOC | {"c": [-1.0] * 10}}, "field posthoc.c.0: Input should be greater than"),
    "tau-nan": ('{"method": "pn", "tau": NaN}', "field posthoc.tau: Input should be a finite number"),
    "tau-negative": ({"posthoc": POSTHOC | {"tau": -5.0}}, "field posthoc.tau: Input should be greater than"),
    "method-unknown": ({"posthoc": POSTHOC | {"method": "magic"}}, "field posthoc.method: Input should be 'pn'"),
    "std-zero": ({"model": MODEL | {"std": [0.0]}}, "field model.std.0: Input should be greater than 0"),
    "head-mismatch": (
        {"model": MODEL | {"num_classes": 5}, "classes": CLASSES[:5], "train_counts": [5] * 5, "posthoc": None},
        "says 5 classes, but the head's weight has shape [10, 64]",
    ),
    "settings-typo": ({"settings": SETTINGS | {"optim": {"lrr": 1}}}, "field settings.optim.lrr"),
}


def _command(name: str, ckpt: Path, data: Path, image: Path) -> list[object]:
    return {
        "eval": ["eval", ckpt, "--data", data, "--tau", "auto", "--no-plots", "--device", "cpu"],
        "tune-tau": ["tune-tau", ckpt, "--data", data, "--no-write", "--device", "cpu"],
        "export": ["export", ckpt, "--data", data, "--no-check", "--out", ckpt.with_suffix(".onnx")],
        "predict": ["predict", ckpt, image],
    }[name]


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("img") / "digit.png"
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8) * 4, mode="L").save(path)
    return path


@pytest.mark.parametrize("command", ["eval", "tune-tau", "export", "predict"])
@pytest.mark.parametrize(("changes", "fragment"), BAD_METADATA.values(), ids=BAD_METADATA.keys())
def test_bad_metadata_is_one_line_naming_file_and_field(cli, tmp_path, digits_data, image, command, changes, fragment):
    if isinstance(changes, str):
        changes = {"posthoc": changes}
    ckpt = with_metadata(tmp_path / "bad.safetensors", **changes)
    before = ckpt.read_bytes()
    outcome = cli(*_command(command, ckpt, digits_data, image))
    assert_one_error_line(outcome, 1, fragment)
    assert f"Error: {ckpt}: checkpoint metadata " in outcome.err
    assert outcome.out == "" and ckpt.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.safetensors"]


def test_nan_tau_is_not_applied_by_eval_auto(cli, tmp_path, digits_data):
    ckpt = with_metadata(tmp_path / "nan.safetensors", posthoc='{"method": "pn", "tau": NaN, "c": null}')
    outcome = cli("eval", ckpt, "--data", digits_data, "--tau", "auto", "--no-plots", "--json")
    assert_one_error_line(outcome, 1, "posthoc.tau: Input should be a finite number")
    assert outcome.out == ""


def _strict_json(text: str) -> object:
    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_json_output_has_no_nan(capsys):
    result_json({"nll": float("inf"), "per_class": [0.5, float("nan")], "n": 3})
    assert _strict_json(capsys.readouterr().out) == {"nll": None, "per_class": [0.5, None], "n": 3}


def test_eval_json_is_strict_json(cli, tmp_path, digits_data):
    ckpt = Path(shutil.copy(FIXTURE, tmp_path / "v1.safetensors"))
    outcome = cli("eval", ckpt, "--data", digits_data, "--tau", "auto", "--no-plots", "--json", "--prior")
    assert outcome.code == 0, outcome.err
    assert _strict_json(outcome.out)["posthoc"]["tau"] == 1.0


@pytest.mark.parametrize(
    ("grid", "fragment"),
    [
        ("-5:-1:1", "τ must lie in [0, 10]"),
        ("0:1e308:1e307", "τ must lie in [0, 10]"),
        ("1e400:2:1", "'1e400' is not a finite number"),
    ],
)
def test_grids_out_of_range_write_nothing(cli, tmp_path, digits_data, grid, fragment):
    ckpt = Path(shutil.copy(FIXTURE, tmp_path / "v1.safetensors"))
    outcome = cli("tune-tau", ckpt, "--data", digits_data, "--grid", grid)
    assert_one_error_line(outcome, 2, fragment)
    assert ckpt.read_bytes() == FIXTURE.read_bytes() and len(list(tmp_path.iterdir())) == 1


@pytest.mark.parametrize("tau", ["-1", "11", "nan", "inf"])
def test_tau_option_is_finite_and_in_range(cli, tmp_path, digits_data, tau):
    ckpt = Path(shutil.copy(FIXTURE, tmp_path / "v1.safetensors"))
    outcome = cli("eval", ckpt, "--data", digits_data, "--tau", tau, "--no-plots")
    assert_one_error_line(outcome, 2, f"--tau {tau!r}")


# A stranger's checkpoint must not reach the network


@pytest.mark.parametrize("command", ["eval", "export", "predict", "bundle-predict"])
def test_pretrained_setting_never_loads_pretrained_weights(cli, tmp_path, digits_data, image, monkeypatch, command):
    import timm

    create = timm.create_model
    asked: list[bool] = []

    def offline_create(name, pretrained=False, **kwargs):
        asked.append(pretrained)
        if pretrained:
            pytest.fail("a model was rebuilt from a checkpoint with pretrained=True (the model hub)")
        return create(name, pretrained=False, **kwargs)

    monkeypatch.setattr(timm, "create_model", offline_create)
    settings = SETTINGS | {"model": SETTINGS["model"] | {"pretrained": True}}
    ckpt = with_metadata(tmp_path / "stranger.safetensors", settings=settings)
    if command == "bundle-predict":
        bundle = tmp_path / "stranger.bundle.safetensors"
        assert cli("export", ckpt, "--data", digits_data, "--format", "safetensors", "--out", bundle).code == 0
        ckpt, command = bundle, "predict"
    outcome = cli(*_command(command, ckpt, digits_data, image))
    assert outcome.code == 0, outcome.err
    assert asked and not any(asked)


# Write protection and file modes


def test_tune_tau_refuses_a_write_protected_checkpoint(cli, tmp_path, digits_data):
    ckpt = Path(shutil.copy(FIXTURE, tmp_path / "v1.safetensors"))
    ckpt.chmod(0o444)
    outcome = cli("tune-tau", ckpt, "--data", digits_data, "--device", "cpu")
    assert_one_error_line(outcome, 1, f"{ckpt} is write-protected; make it writable or pass --no-write")
    assert stat.S_IMODE(ckpt.stat().st_mode) == 0o444 and ckpt.read_bytes() == FIXTURE.read_bytes()
    assert [p.name for p in tmp_path.iterdir()] == ["v1.safetensors"]
    assert cli("tune-tau", ckpt, "--data", digits_data, "--no-write").code == 0


def test_export_does_not_replace_a_write_protected_file(cli, tmp_path, digits_data):
    ckpt = Path(shutil.copy(FIXTURE, tmp_path / "v1.safetensors"))
    out = tmp_path / "v1.onnx"
    out.write_bytes(b"mine")
    out.chmod(0o444)
    outcome = cli("export", ckpt, "--data", digits_data, "--out", out, "--overwrite")
    assert_one_error_line(outcome, 1, f"write-protected file (mode 0444) while writing {out}")
    assert out.read_bytes() == b"mine"


@pytest.fixture
def umask_027():
    previous = os.umask(0o027)
    yield
    os.umask(previous)


def test_rewritten_checkpoint_keeps_its_mode_and_new_files_follow_the_umask(cli, tmp_path, digits_data, umask_027):
    ckpt = Path(shutil.copy(FIXTURE, tmp_path / "v1.safetensors"))
    ckpt.chmod(0o664)
    assert cli("tune-tau", ckpt, "--data", digits_data, "--grid", "0:1:0.5").code == 0
    assert stat.S_IMODE(ckpt.stat().st_mode) == 0o664
    assert stat.S_IMODE((tmp_path / "tau-pn.png").stat().st_mode) == 0o640
    exported = cli("export", ckpt, "--data", digits_data)
    assert exported.code == 0, exported.err
    out = Path(exported.out.strip())
    assert stat.S_IMODE(out.stat().st_mode) == 0o640
    assert stat.S_IMODE(Path(f"{out}.json").stat().st_mode) == 0o640


def test_training_files_follow_the_umask(tmp_path, digits_data, umask_027):
    from bagmar_cli.engine.train.recipe import train
    from bagmar_cli.settings import load_settings

    settings = load_settings(
        "digits_lt",
        overrides=["model.backbone=resnet8_cifar"],
        flags={"data.root": digits_data, "train.epochs": 1, "train.device": "cpu"},
    )
    best = train(settings, tmp_path / "run")
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in best.parent.iterdir() if not p.name.startswith(".")}
    events = [name for name in modes if name.startswith("events.out.tfevents.")]  # TensorBoard's, when installed
    expected = ["best.safetensors", "last.safetensors", "config.toml", "metrics.jsonl", *events]
    assert modes == dict.fromkeys(expected, 0o640)


# stdout that lies: real processes, real file descriptors


def _shell(command: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        ["bash", "-c", command], capture_output=True, text=True, timeout=timeout, env=env, check=False
    )


def _bagmar() -> str:
    return f"{sys.executable} -m bagmar_cli"


@pytest.fixture(scope="module")
def ckpt_copy(tmp_path_factory) -> Path:
    return Path(shutil.copy(FIXTURE, tmp_path_factory.mktemp("stdout") / "v1.safetensors"))


@pytest.mark.parametrize(
    ("redirect", "fragment"),
    [(">&-", "stdout is closed"), ("> /dev/full", "cannot write the result to stdout: No space left on device")],
    ids=["closed", "dev-full"],
)
def test_a_result_that_cannot_be_written_is_exit_1(ckpt_copy, digits_data, redirect, fragment):
    args = f"eval {ckpt_copy} --data {digits_data} --no-plots --json --device cpu"
    done = _shell(f"{_bagmar()} {args} {redirect}")
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert done.returncode == 1, done.stderr
    assert len(errors) == 1 and fragment in errors[0] and "Traceback" not in done.stderr


def test_a_closed_pipe_ends_quietly():
    done = _shell(f"{_bagmar()} presets | true; exit ${{PIPESTATUS[0]}}")
    assert done.returncode == 0 and done.stderr == ""


def test_version_goes_to_stdout(cli):
    outcome = cli("--version")
    assert outcome.code == 0 and outcome.out == f"bagmar {__version__}\n" and outcome.err == ""


# Images and models that are not regular files; 16-bit images


def test_predict_refuses_a_fifo_named_directly(tmp_path):
    fifo = tmp_path / "some.png"
    os.mkfifo(fifo)
    done = _shell(f"{_bagmar()} predict {FIXTURE} {fifo}", timeout=60)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines()[-1] == f"Error: {fifo}: not a regular file (a FIFO, socket or device); " + (
        "predict reads image files"
    )


def test_a_fifo_as_checkpoint_is_refused(tmp_path):
    fifo = tmp_path / "model.safetensors"
    os.mkfifo(fifo)
    done = _shell(f"{_bagmar()} eval {fifo} --no-plots", timeout=60)
    assert done.returncode == 1 and "is not a regular file" in done.stderr.strip().splitlines()[-1]


def test_a_fifo_as_model_is_refused(tmp_path, image):
    fifo = tmp_path / "model.onnx"
    os.mkfifo(fifo)
    done = _shell(f"{_bagmar()} predict {fifo} {image}", timeout=60)
    assert done.returncode == 2 and done.stderr.strip().splitlines()[-1] == (
        f"Error: model {fifo}: not a regular file (a FIFO, socket or device)"
    )


def test_16_bit_png_predicts_as_its_8_bit_version(cli, tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (8, 8), dtype=np.uint8)
    Image.fromarray(pixels, mode="L").save(tmp_path / "a-8bit.png")
    Image.fromarray(pixels.astype(np.uint16) * 257).save(tmp_path / "b-16bit.png")
    assert Image.open(tmp_path / "b-16bit.png").mode.startswith("I")
    outcome = cli("predict", FIXTURE, tmp_path, "-k", "10", "--json")
    assert outcome.code == 0, outcome.err
    eight, sixteen = (json.loads(line)["top_k"] for line in outcome.out.splitlines())
    assert sixteen == eight


# Export sidecars


@pytest.fixture(scope="module")
def onnx_export(tmp_path_factory, digits_data) -> Path:
    from bagmar_cli.engine.serve.export import ExportOptions, export_model

    ckpt = Path(shutil.copy(FIXTURE, tmp_path_factory.mktemp("export") / "v1.safetensors"))
    return export_model(ExportOptions(ckpt, "onnx", data=digits_data, batch=3))


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"classes": 7}, "field classes: Input should be a valid list"),
        ({"mean": "abc"}, "field mean: Input should be a valid list"),
        ({"std": [0.0]}, "field std.0: Input should be greater than 0"),
        ({"format": "pickle"}, "field format: Input should be"),
        ({"batch": 0}, "field batch"),
        ({"classes": CLASSES[:5], "posthoc": None}, "field classes names 5 classes but the model gives [10] outputs"),
        ({"classes": CLASSES[:5]}, "posthoc.c has 10 values for 5 classes"),
    ],
    ids=["classes-a-number", "mean-a-string", "std-zero", "format-unknown", "batch-zero", "fewer-classes", "c-length"],
)
def test_bad_sidecar_is_one_line_naming_the_field(cli, tmp_path, onnx_export, image, changes, fragment):
    model = Path(shutil.copy(onnx_export, tmp_path / "m.onnx"))
    sidecar = json.loads(Path(f"{onnx_export}.json").read_text())
    Path(f"{model}.json").write_text(json.dumps(sidecar | changes))
    outcome = cli("predict", model, image)
    assert_one_error_line(outcome, 1, fragment)
    assert f"{model}.json" in outcome.err and outcome.out == ""


def test_serving_snippet_runs_a_fixed_batch_export(cli, tmp_path, onnx_export, digits_data):
    serve = serving_snippet(tmp_path)
    images = []
    for i in range(5):  # not a multiple of the export's batch of 3
        images.append(tmp_path / f"{i}.png")
        Image.fromarray((np.arange(64).reshape(8, 8) * (i + 1) % 256).astype(np.uint8), mode="L").save(images[-1])
    done = subprocess.run([sys.executable, serve, onnx_export, *images], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    predicted = cli("predict", onnx_export, *images)
    assert predicted.code == 0, predicted.err
    assert [line.split()[:2] for line in done.stdout.splitlines()] == [
        line.split()[:2] for line in predicted.out.splitlines()
    ]


# Smaller: eval options


def test_eval_method_without_tau_is_refused(cli, tmp_path, digits_data):
    ckpt = Path(shutil.copy(FIXTURE, tmp_path / "v1.safetensors"))
    outcome = cli("eval", ckpt, "--data", digits_data, "--method", "pn", "--no-plots")
    assert_one_error_line(outcome, 2, "--method goes with --tau NUMBER")


def test_eval_same_checkpoint_twice_is_refused(cli, tmp_path, digits_data):
    ckpt = Path(shutil.copy(FIXTURE, tmp_path / "v1.safetensors"))
    outcome = cli("eval", ckpt, tmp_path / "." / "v1.safetensors", "--data", digits_data, "--no-plots")
    assert_one_error_line(outcome, 2, "is given twice")


def test_default_plots_that_cannot_be_written_do_not_lose_the_result(cli, tmp_path, digits_data, monkeypatch):
    from bagmar_cli import plots

    def read_only(path, data):
        raise WriteError(30, "Read-only file system", str(path))

    monkeypatch.setattr(plots, "atomic_write", read_only)
    ckpt = Path(shutil.copy(FIXTURE, tmp_path / "v1.safetensors"))
    outcome = cli("eval", ckpt, "--data", digits_data, "--json")
    assert outcome.code == 0, outcome.err
    assert outcome.json()["plots"] is None and outcome.json()["top1"] == pytest.approx(35 / 300)
    assert "Warning: no plots: Read-only file system" in outcome.err
