"""`model.features = "projected"`: the head sees the backbone's own pretrained head's outputs (a CLIP projection)."""

import re

import pytest
import timm
import torch

from bagmar_cli.errors import SettingError
from bagmar_cli.models import build_model
from bagmar_cli.models.freeze import train_only
from bagmar_cli.settings import ModelSettings


def test_the_head_sees_the_backbones_own_head_outputs():
    width = timm.models.get_pretrained_cfg("test_vit").num_classes
    torch.manual_seed(0)
    model = build_model(ModelSettings(backbone="test_vit", features="projected", head="normed"), 5, 3).eval()
    torch.manual_seed(0)
    reference = timm.create_model("test_vit", pretrained=False, num_classes=width).eval()
    x = torch.randn(2, 3, 160, 160)
    assert model.head.weight.shape == (5, width)
    torch.testing.assert_close(model.features(x), reference(x))


def test_a_clip_tower_projects_into_the_512_wide_text_space_and_the_projection_is_frozen_under_peft():
    settings = ModelSettings(
        backbone="vit_base_patch16_clip_224.openai", features="projected", peft="lora", head="normed"
    )
    model = build_model(settings, 10, 3)
    train_only(model, settings)
    assert model.backbone.head.out_features == 512 and model.head.weight.shape == (10, 512)
    assert not model.backbone.head.weight.requires_grad


def test_a_backbone_without_a_pretrained_head_is_one_setting_error():
    with pytest.raises(SettingError, match=re.escape('`model.features` = "projected" keeps the backbone\'s own')):
        build_model(ModelSettings(backbone="resnet20_cifar", features="projected"), 10, 3)
