"""Library messages name settings and options; the error line shows the flags of the command that ran."""

import typer

from bagmar_cli.cli import app
from bagmar_cli.cli.app import exit_code
from bagmar_cli.cli.fields import flags_for, render
from bagmar_cli.errors import DatasetError, Interrupted, SettingError


def _flags(*args: str) -> dict[str, str]:
    return flags_for(typer.main.get_group(app), list(args))


def test_a_named_option_is_shown_as_the_flag_of_the_command_that_ran() -> None:
    message = "`out` x holds a run: `resume` continues it, `overwrite` replaces it"
    assert (
        render(message, _flags("train", "--out", "x"))
        == "--out x holds a run: --resume continues it, --overwrite replaces it"
    )
    assert render("`val_fraction` must be below 1", _flags("prepare", "digits")) == "--val-fraction must be below 1"


def test_an_option_is_named_by_its_flag_even_when_its_parameter_is_named_otherwise() -> None:
    assert render("unknown `format` 'tflite'", _flags("export", "x.safetensors")) == "unknown --format 'tflite'"


def test_train_shows_the_flags_that_set_settings_and_leaves_other_names_alone() -> None:
    flags = _flags("train")
    assert render("`train.epochs` must be positive", flags) == "--epochs must be positive"
    assert (
        render("trained without `train.ema`; see `config.toml`", flags)
        == "trained without `train.ema`; see `config.toml`"
    )
    assert render("`train.epochs`", _flags("eval")) == "`train.epochs`"  # eval has no flag that sets it


def test_exit_codes_are_decided_by_the_cli() -> None:
    assert exit_code(SettingError("x")) == 2
    assert exit_code(Interrupted("x")) == 130
    assert exit_code(DatasetError("x")) == 1
