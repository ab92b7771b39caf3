"""settings/stages.py: [stage2] as a typed partial tree that keeps in step with the sections it changes."""

from __future__ import annotations

from pathlib import Path

import pytest

from bagmar_cli.errors import SettingError
from bagmar_cli.settings import Settings, Stage2, load_settings
from bagmar_cli.settings.stages import STAGE1_ONLY


@pytest.mark.parametrize("section", list(Stage2.model_fields))
def test_each_partial_section_has_every_field_stage_2_may_change_with_its_type(section: str) -> None:
    full = Settings.model_fields[section].annotation
    partial = Stage2.model_fields[section].annotation
    assert full is not None and partial is not None
    partial_model = next(arg for arg in partial.__args__ if arg is not type(None))
    changeable = {name for name in full.model_fields if f"{section}.{name}" not in STAGE1_ONLY}
    assert set(partial_model.model_fields) == changeable
    for name in changeable:
        expected = full.model_fields[name].annotation | None  # compared as text: each Field(...) is its own object
        assert str(partial_model.model_fields[name].annotation) == str(expected), name
        assert partial_model.model_fields[name].default is None


def test_every_section_of_the_tree_has_a_partial() -> None:
    sections = {name for name, field in Settings.model_fields.items() if hasattr(field.annotation, "model_fields")}
    assert sections == set(Stage2.model_fields)


def test_stage2_is_typed_and_keeps_only_what_it_sets(tmp_path: Path) -> None:
    weights = tmp_path / "w.safetensors"
    settings = load_settings(overrides=["stage2.train.epochs=3", f"stage2.model.weights='{weights}'"])
    assert settings.stage2 is not None and settings.stage2.train is not None
    assert settings.stage2.train.epochs == 3 and settings.stage2.weights == weights
    assert settings.stage2.changes() == {"model": {"weights": str(weights)}, "train": {"epochs": 3}}
    assert "[stage2.train]\nepochs = 3\n" in settings.to_toml()


def test_a_wrong_type_in_stage2_names_the_stage2_key() -> None:
    with pytest.raises(SettingError) as caught:
        load_settings(overrides=["stage2.loss.form=bogus"])
    assert str(caught.value).startswith("setting stage2.loss.form = 'bogus': input should be 'paper' or 'reference'")
