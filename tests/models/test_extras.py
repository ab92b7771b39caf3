"""A setting that needs a missing optional package (peft, open_clip) is one SettingError naming it and the extra."""

import sys

import pytest

from bagmar_cli.errors import SettingError
from bagmar_cli.models import build_model
from bagmar_cli.models.finetune import merged
from bagmar_cli.models.head_init import load_text_model
from bagmar_cli.settings import ModelSettings


@pytest.fixture
def without(monkeypatch):
    """Make importing the named packages fail, as when they are not installed (None in sys.modules)."""

    def hide(*packages):
        for package in packages:
            monkeypatch.setitem(sys.modules, package, None)

    return hide


def test_lora_without_peft_is_one_line_naming_the_setting_and_the_extra(without):
    without("peft")
    with pytest.raises(SettingError) as caught:
        build_model(ModelSettings(backbone="test_vit", peft="lora"), 5, 3)
    message = str(caught.value)
    assert message == (
        '`model.peft` = "lora" needs the optional package peft, which is not installed: '
        "pip install 'bagmar[finetune]'"
    )


def test_a_text_head_without_open_clip_is_one_line(without):
    without("open_clip")
    with pytest.raises(
        SettingError,
        match=r"`model.head_init` = \"text\" needs the optional package open_clip.*"
        r"pip install 'bagmar\[finetune\]'",
    ):
        load_text_model(ModelSettings(head="normed", head_init="text"))


def test_adaptformer_needs_no_extra(without):
    without("peft", "open_clip")
    model = build_model(ModelSettings(backbone="test_vit", peft="adaptformer"), 5, 3)
    assert merged(model).state_dict().keys() == model.state_dict().keys()
