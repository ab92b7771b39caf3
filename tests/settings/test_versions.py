"""settings/versions.py: config.toml files and checkpoints written before `settings_version` still load, migrated
to the current version; a tree from a newer bagmar is one clear error."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from bagmar_cli.checkpoint import load_checkpoint
from bagmar_cli.checkpoint_meta import parse_meta
from bagmar_cli.errors import SettingError
from bagmar_cli.settings import SETTINGS_VERSION, load_settings, migrate, read_settings_file

FIXTURES = Path(__file__).parents[1] / "fixtures"
V1_CONFIG = FIXTURES / "config" / "v1-config.toml"
V1_TWO_STAGE = FIXTURES / "config" / "v1-two-stage-config.toml"
V1_CHECKPOINT = FIXTURES / "checkpoints" / "v1-tuned.safetensors"


def test_a_version_1_config_loads_with_every_setting_it_recorded_but_the_dead_one() -> None:
    raw = tomllib.loads(V1_CONFIG.read_text())
    assert "settings_version" not in raw and raw["eval"]["split"] == "val"
    settings = read_settings_file(V1_CONFIG)
    assert settings.settings_version == SETTINGS_VERSION == 2
    assert settings == load_settings("digits_lt")  # the preset it was resolved from, in today's version
    assert "split" not in settings.model_dump()["eval"]
    assert "settings_version = 2\n" in settings.to_toml() and "split" not in settings.to_toml().split("[eval]")[1]


def test_a_version_1_two_stage_config_loads_and_its_stage2_table_migrates_too() -> None:
    settings = read_settings_file(V1_TWO_STAGE)
    assert settings.stage2 is not None and settings.stage2.eval is not None
    assert settings.stage2.eval.batch_size == 64
    _, second = settings.stages()
    assert second is not None and second.eval.batch_size == 64


def test_a_version_1_config_given_as_a_config_file_migrates_before_it_is_merged() -> None:
    settings = load_settings("digits_lt", config=V1_CONFIG, overrides=["train.epochs=2"])
    assert settings.train.epochs == 2 and settings.settings_version == SETTINGS_VERSION


def test_a_checkpoint_written_before_versions_loads_migrated() -> None:
    meta = load_checkpoint(V1_CHECKPOINT, tensors=False).meta
    assert meta.settings.settings_version == SETTINGS_VERSION
    assert meta.encoded()["settings"]["settings_version"] == SETTINGS_VERSION
    assert "split" not in meta.encoded()["settings"]["eval"]


def test_migrate_leaves_its_input_alone_and_drops_only_the_dead_key() -> None:
    tree = {"eval": {"split": "test", "batch_size": 8}, "stage2": {"eval": {"split": "val"}}}
    migrated = migrate(tree)
    assert migrated == {"eval": {"batch_size": 8}, "stage2": {"eval": {}}, "settings_version": 2}
    assert tree == {"eval": {"split": "test", "batch_size": 8}, "stage2": {"eval": {"split": "val"}}}
    assert migrate(migrated) == migrated


def test_a_config_from_a_newer_bagmar_is_one_clear_error(tmp_path: Path) -> None:
    newer = tmp_path / "config.toml"
    newer.write_text("settings_version = 3\n[train]\nepochs = 1\n")
    with pytest.raises(SettingError) as caught:
        read_settings_file(newer, "run settings")
    assert str(caught.value) == (
        f"run settings {str(newer)!r}: settings_version 3 is newer than this bagmar reads (2); upgrade bagmar"
    )


def test_a_checkpoint_from_a_newer_bagmar_is_one_clear_error() -> None:
    meta = load_checkpoint(V1_CHECKPOINT, tensors=False).meta.encoded()
    meta["settings"]["settings_version"] = 3
    with pytest.raises(ValueError, match=r"^field settings: settings_version 3 is newer than this bagmar reads \(2\)"):
        parse_meta(meta)


@pytest.mark.parametrize("version", [0, "2", True, 1.5])
def test_a_version_that_is_not_a_whole_number_from_1_is_refused(version: object) -> None:
    with pytest.raises(ValueError, match="settings_version"):
        migrate({"settings_version": version})


def test_the_dead_key_is_unknown_in_a_current_tree() -> None:
    with pytest.raises(SettingError, match=r"unknown setting 'eval\.split'"):
        load_settings(overrides=["eval.split=test"])
