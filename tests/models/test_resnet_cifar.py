"""The CIFAR ResNets: registered with timm, standard sizes, features separate from the head."""

import pytest
import timm
import torch

import bagmar_cli.models  # noqa: F401  (registers the CIFAR ResNets)
from bagmar_cli.errors import SettingError
from bagmar_cli.models import NormedLinear, build_model
from bagmar_cli.settings import ModelSettings


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_resnet32_has_the_standard_parameter_count():
    # 0.46 M, the figure of He et al. 2016 (table 6) for ResNet-32 on CIFAR-10.
    assert _params(timm.create_model("resnet32_cifar", num_classes=10)) == 464_154
    assert _params(timm.create_model("resnet32_cifar", num_classes=100)) == 470_004


@pytest.mark.parametrize(
    "name, millions", [("resnet20_cifar", 0.27), ("resnet44_cifar", 0.66), ("resnet56_cifar", 0.85)]
)
def test_other_depths_match_the_paper(name, millions):
    assert round(_params(timm.create_model(name, num_classes=10)) / 1e6, 2) == millions


def test_resnet8_has_one_block_per_stage():
    # 6n+2 layers with n = 1: the stem, three blocks of two convolutions, the classifier (no published count).
    model = timm.create_model("resnet8_cifar", num_classes=10, in_chans=1)
    weighted = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert len(weighted) == 8


def test_resnet8_s2_halves_the_resolution_with_the_same_weights():
    plain = timm.create_model("resnet8_cifar", num_classes=10, in_chans=1)
    strided = timm.create_model("resnet8_s2_cifar", num_classes=10, in_chans=1)
    x = torch.randn(2, 1, 28, 28)
    assert plain.forward_features(x).shape == (2, 64, 7, 7)
    assert strided.forward_features(x).shape == (2, 64, 4, 4)
    assert strided(x).shape == (2, 10)
    assert _params(strided) == _params(plain)


def test_features_without_classifier():
    model = timm.create_model("resnet32_cifar", num_classes=0)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 64)


def test_classifier_splits_backbone_and_head():
    model = build_model(ModelSettings(), num_classes=7, in_chans=1)
    x = torch.randn(3, 1, 8, 8)
    assert torch.allclose(model(x), model.head(model.features(x)))
    assert model.head.weight.shape == (7, 64)


def test_normed_head_gives_cosines():
    model = build_model(ModelSettings(head="normed"), num_classes=5, in_chans=3)
    assert isinstance(model.head, NormedLinear)
    assert model(torch.randn(4, 3, 32, 32)).abs().max() <= 1 + 1e-5


def test_normed_head_scales_its_cosines():
    torch.manual_seed(0)
    plain = build_model(ModelSettings(head="normed"), num_classes=5, in_chans=3)
    scaled = build_model(ModelSettings(head="normed", head_scale=30.0), num_classes=5, in_chans=3)
    scaled.load_state_dict(plain.state_dict())
    x = torch.randn(4, 3, 32, 32)
    assert torch.allclose(scaled.eval()(x), 30 * plain.eval()(x), atol=1e-5)
    assert "scale=30" in repr(scaled.head)


def test_a_head_scale_needs_the_cosine_head():
    with pytest.raises(ValueError, match="normed"):
        ModelSettings(head_scale=30.0)


def test_any_timm_backbone():
    model = build_model(ModelSettings(backbone="resnet18"), num_classes=3, in_chans=1)
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 3)


def test_unknown_backbone_is_usage_error():
    with pytest.raises(SettingError, match="did you mean 'resnet32_cifar'"):
        build_model(ModelSettings(backbone="resnet32_cifr"), num_classes=3, in_chans=3)
