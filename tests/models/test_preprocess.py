"""A pretrained backbone's own preprocessing (models/preprocess.py), from timm's registry without weights, and the
ImageNet-1k pitfall of ImageNet-LT."""

import pytest

from bagmar_cli.models.preprocess import BackboneDataConfig, backbone_data_config, saw_imagenet_test_classes
from bagmar_cli.settings import ModelSettings

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # OpenAI CLIP's normalisation
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def test_a_clip_tower_brings_clips_normalisation_and_bicubic_224():
    config = backbone_data_config(ModelSettings(backbone="vit_base_patch16_clip_224.openai", pretrained=True))
    assert config == BackboneDataConfig(
        input_size=(3, 224, 224),
        interpolation="bicubic",
        mean=CLIP_MEAN,
        std=CLIP_STD,
        crop_pct=0.9,
        crop_mode="center",
    )


def test_a_local_weights_file_of_test_vit_brings_its_default_tags_config(tmp_path):
    config = backbone_data_config(ModelSettings(backbone="test_vit", weights=tmp_path / "w.safetensors"))
    assert config is not None
    assert (config.input_size, config.mean, config.std, config.crop_pct) == (
        (3, 160, 160),
        (0.5,) * 3,
        (0.5,) * 3,
        0.95,
    )


def test_the_users_overrides_win():
    settings = ModelSettings(backbone="vit_base_patch16_clip_224.openai", pretrained=True)
    config = backbone_data_config(settings, {"crop_pct": 1.0, "interpolation": "bilinear", "mean": None})
    assert config is not None
    assert (config.crop_pct, config.interpolation, config.mean) == (1.0, "bilinear", CLIP_MEAN)


@pytest.mark.parametrize("backbone", ["test_vit", "resnet32_cifar"])
def test_no_pretrained_weights_or_no_cfg_is_none(backbone, tmp_path):
    assert backbone_data_config(ModelSettings(backbone=backbone)) is None
    assert backbone_data_config(ModelSettings(backbone="resnet32_cifar", weights=tmp_path / "w.safetensors")) is None


@pytest.mark.parametrize(
    ("backbone", "dataset", "warned"),
    [
        ("resnet50.a1_in1k", "imagenet_lt", True),
        ("vit_base_patch16_224.augreg2_in21k_ft_in1k", "imagenet_lt", True),
        ("convnext_base.fb_in22k_ft_in1k", "imagenet_lt", True),
        ("resnet50", "imagenet_lt", True),  # the default tag, a1_in1k
        ("vit_base_patch16_clip_224.openai", "imagenet_lt", False),
        ("vit_base_patch16_224.augreg_in21k", "imagenet_lt", False),
        ("resnet50.a1_in1k", "places_lt", False),
    ],
)
def test_in1k_weights_on_imagenet_lt_are_flagged(backbone, dataset, warned):
    assert saw_imagenet_test_classes(ModelSettings(backbone=backbone, pretrained=True), dataset) is warned


def test_random_weights_are_not_flagged():
    assert not saw_imagenet_test_classes(ModelSettings(backbone="resnet50.a1_in1k"), "imagenet_lt")
