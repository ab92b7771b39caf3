"""Settings: precedence of sources, and errors that name the key, the value and the fix."""

import tomllib
from pathlib import Path

import pytest

from bagmar_cli.errors import SettingError
from bagmar_cli.settings import Settings, load_settings, parse_override, preset_names, read_preset, validate


def test_defaults_are_valid():
    assert Settings().train.epochs == 200


def test_precedence_preset_config_set_flags(tmp_path: Path):
    config = tmp_path / "c.toml"
    config.write_text("[train]\nepochs = 7\nbatch_size = 32\n[optim]\nlr = 0.2\n")
    s = load_settings("cifar100_lt", config, ["train.epochs=9", "optim.lr=0.3"], {"train.epochs": 11})
    assert s.loss.name == "bagmar"  # from the preset
    assert s.train.batch_size == 32  # config over preset
    assert s.optim.lr == 0.3  # --set over config
    assert s.train.epochs == 11  # explicit flag over --set


def test_unknown_key_suggests_closest():
    with pytest.raises(SettingError, match=r"unknown setting 'train.epoch' \(did you mean 'epochs'\?\)"):
        load_settings(overrides=["train.epoch=3"])


def test_unknown_section_suggests_closest():
    with pytest.raises(SettingError, match=r"'optimm'.*did you mean 'optim'"):
        load_settings(overrides=["optimm.lr=3"])


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("train.epochs=-1", "train.epochs = -1: input should be greater than or equal to 1"),
        ("train.epochs=abc", "train.epochs = 'abc'"),
        ("data.imb=0.5", "data.imb = 0.5"),
        ("data.imb=nan", "data.imb = nan: input should be a finite number"),
        ("loss.form=other", "loss.form = 'other'"),
    ],
)
def test_bad_value_names_key_value_and_expectation(override, fragment):
    with pytest.raises(SettingError) as info:
        load_settings(overrides=[override])
    assert fragment in str(info.value)


def test_override_without_equals_is_usage_error():
    with pytest.raises(SettingError, match=r"expected section.key=value"):
        parse_override("train.epochs")


def test_override_values_are_typed():
    assert parse_override("train.epochs=3") == ("train.epochs", 3)
    assert parse_override("loss.name=bagmar") == ("loss.name", "bagmar")
    assert parse_override("schedule.milestones=[1, 2]") == ("schedule.milestones", [1, 2])


def test_config_not_toml(tmp_path: Path):
    bad = tmp_path / "bad.toml"
    bad.write_text("this is = = not toml")
    with pytest.raises(SettingError, match="not valid TOML"):
        load_settings(config=bad)


def test_preset_that_is_a_directory(tmp_path: Path):
    with pytest.raises(SettingError, match="is a directory"):
        load_settings(preset=str(tmp_path))


def test_unknown_preset_suggests():
    with pytest.raises(SettingError, match="did you mean 'cifar100_lt'"):
        load_settings(preset="cifar100-lt")


FOLDER_RECIPES = {"finetune"}  # `bagmar prepare folder`'s default preset


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_resolves_and_describes_itself(name):
    settings = load_settings(preset=name)
    assert settings.description
    if name in FOLDER_RECIPES:  # a recipe for the user's own folder: `train --data DIR` names it (the manifest's)
        assert settings.data.dataset is None
        return
    assert settings.data.dataset is not None  # every recipe names its dataset: `train --preset P` finds it


def test_preset_inheritance_overrides_parent():
    tree = read_preset("cifar100_lt_imb50_ce")
    assert tree["data"]["imb"] == 50.0 and tree["loss"]["name"] == "ce"
    assert tree["train"]["epochs"] == 200  # inherited from cifar100_lt


def test_paper_recipe_values():
    s = load_settings(preset="cifar100_lt")
    assert (s.train.epochs, s.train.batch_size, s.optim.lr, s.optim.momentum, s.optim.weight_decay) == (
        200,
        64,
        0.1,
        0.9,
        5e-4,
    )
    assert s.data.autoaugment and s.data.cutout == 16
    assert (s.loss.name, s.loss.lambda1, s.loss.lambda2) == ("bagmar", 1.0, 1.0)


def test_toml_round_trip():
    s = load_settings(preset="cifar100_lt_imb100_ldam_drw")
    assert validate(tomllib.loads(s.to_toml())) == s


def test_a_default_preset_is_looked_up_by_name_only(tmp_path: Path, monkeypatch):
    """A dataset's default preset is a shipped preset's name; a path, or a file of that name here, is never read."""
    shipped = load_settings("digits_lt").train.epochs
    monkeypatch.chdir(tmp_path)
    (tmp_path / "digits_lt").write_text("[train]\nepochs = 99\n")
    assert load_settings(default_preset="digits_lt").train.epochs == shipped != 99
    for name in ("../../etc/passwd", "./digits_lt", ".hidden"):
        with pytest.raises(SettingError, match="unknown preset"):
            load_settings(default_preset=name)
    assert load_settings("cifar10_lt", default_preset="digits_lt").data.dataset == "cifar10"  # a given preset wins


def test_resume_compares_every_setting_but_the_description():
    from bagmar_cli.settings import changed_settings

    base = load_settings("digits_lt")
    assert changed_settings(base, base.model_copy(update={"description": "other"})) == []
    changed = load_settings("digits_lt", overrides=["optim.lr=0.5", "train.device=cpu"])
    assert changed_settings(base, changed) == [("optim.lr", 0.1, 0.5), ("train.device", "auto", "cpu")]


# -- two stages ----------------------------------------------------------------------------------


def test_stage_2_is_stage_1_changed_by_the_stage2_keys():
    settings = load_settings("cifar10_lt", overrides=["stage2.train.epochs=3", "stage2.loss.name=ce"])
    first, second = settings.stages()
    assert first.stage2 is None and first.train.epochs == 200 and first.loss.name == "bagmar"
    assert second is not None and second.stage2 is None
    assert (second.train.epochs, second.loss.name, second.optim.lr) == (3, "ce", first.optim.lr)
    assert not settings.skips_stage1
    assert load_settings("cifar10_lt").stages() == (load_settings("cifar10_lt"), None)


def test_stage_2_never_rereads_stage_1s_weights_and_skips_stage_1_when_given_its_own(tmp_path):
    settings = load_settings(overrides=["model.pretrained=true", "stage2.train.epochs=1"])
    _, second = settings.stages()
    assert second is not None and not second.model.pretrained and second.model.weights is None
    given = load_settings(overrides=["model.pretrained=true", f"stage2.model.weights='{tmp_path / 'w.safetensors'}'"])
    assert given.skips_stage1 and given.stages()[1].model.weights == tmp_path / "w.safetensors"


@pytest.mark.parametrize(
    "override, message",
    [
        ("stage2.model.backbone=resnet20_cifar", "stage2.model.backbone cannot change between the stages"),
        ("stage2.data.dataset=digits", "stage2.data.dataset cannot change between the stages"),
        ("stage2.train.device=cpu", "stage2.train.device cannot change between the stages"),
        ("stage2.train.epocs=3", "unknown setting 'stage2.train.epocs' (did you mean 'epochs'?)"),
        ("stage2.train.epochs=0", "setting stage2.train.epochs = 0: input should be greater than or equal to 1"),
        ("stage2={}", "[stage2] is empty: give the settings that change for stage 2, or leave it out"),
        ("stage2=3", "setting stage2 = 3: input should be a valid dictionary"),
    ],
)
def test_a_stage2_table_that_cannot_be_stage_2_is_one_readable_error(override, message):
    with pytest.raises(SettingError) as caught:
        load_settings(overrides=[override])
    assert str(caught.value).startswith(message)
