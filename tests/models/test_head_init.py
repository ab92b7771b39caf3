"""Initial cosine heads (models/head_init.py): class means by hand, and CLIP text features from a tiny random
open_clip text tower (no network: a registered tiny config and a local weights file)."""

import json
import re

import open_clip
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from bagmar_cli.errors import SettingError
from bagmar_cli.models import build_model
from bagmar_cli.models.head_init import class_means, init_class_mean, init_text, text_embeddings, write_head
from bagmar_cli.settings import ModelSettings

TINY = {  # a CLIP whose towers have one layer each; its joint embedding has test_vit's 64 features
    "embed_dim": 64,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def test_class_means_by_hand():
    features = torch.tensor([[3.0, 4.0], [1.0, 0.0], [0.0, 2.0], [5.0, 0.0]])
    labels = torch.tensor([0, 0, 1, 0])
    batches = [(features[:2], labels[:2]), (features[2:], labels[2:])]  # two batches, as a loader gives them
    means, counts = class_means(lambda x: x, batches, 3)
    expected = torch.tensor([[(0.6 + 1 + 1) / 3, 0.8 / 3], [0.0, 1.0], [0.0, 0.0]])  # normalised, then averaged
    torch.testing.assert_close(means, expected)
    assert counts.tolist() == [3, 1, 0]


def test_the_class_mean_head_equals_the_hand_computed_means_and_keeps_classes_without_images():
    torch.manual_seed(0)
    model = build_model(ModelSettings(backbone="resnet8_cifar", head="normed", head_init="class_mean"), 3, 3)
    model.train()
    x, y = torch.randn(6, 3, 8, 8), torch.tensor([0, 0, 1, 1, 1, 0])
    untouched = model.head.weight[2].detach().clone()
    with torch.no_grad():
        features = F.normalize(model.eval().features(x), dim=1)
    model.train()
    counts = init_class_mean(model, [(x[:4], y[:4]), (x[4:], y[4:])])
    assert counts.tolist() == [3, 3, 0] and model.training  # back in training mode
    torch.testing.assert_close(model.head.weight[0], features[[0, 1, 5]].mean(0))
    torch.testing.assert_close(model.head.weight[1], features[[2, 3, 4]].mean(0))
    assert torch.equal(model.head.weight[2], untouched)


def test_an_empty_training_split_is_refused():
    with pytest.raises(SettingError, match="training split is empty"):
        class_means(lambda x: x, [], 3)


def test_only_a_cosine_head_of_the_backbones_width_is_written():
    linear = build_model(ModelSettings(backbone="resnet8_cifar"), 3, 3)
    with pytest.raises(SettingError, match=re.escape('needs `model.head` = "normed"')):
        write_head(linear.head, torch.zeros(3, 64))
    normed = build_model(ModelSettings(backbone="resnet8_cifar", head="normed"), 3, 3)  # 64 features
    with pytest.raises(SettingError, match=r"the head is \(3, 64\).*initial weights are \(3, 512\)"):
        write_head(normed.head, torch.zeros(3, 512))


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """The name of a registered tiny open_clip config, and a local safetensors file of its random weights."""
    folder = tmp_path_factory.mktemp("open_clip")
    (folder / "bagmar-tiny-test.json").write_text(json.dumps(TINY))
    open_clip.add_model_config(folder)
    torch.manual_seed(0)
    model = open_clip.create_model("bagmar-tiny-test")
    weights = folder / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, weights)
    return "bagmar-tiny-test", weights, model.eval()


def test_text_embeddings_are_the_towers_normalised_features_of_each_prompt(tiny_clip):
    _, _, model = tiny_clip
    seen = []
    tokenizer = open_clip.get_tokenizer("ViT-B-16")

    def spy(texts):
        seen.extend(texts)
        return tokenizer(texts)

    embeddings = text_embeddings(model, spy, ["golden_retriever", "tabby cat"], "a photo of a {}.")
    assert seen == ["a photo of a golden retriever.", "a photo of a tabby cat."]
    with torch.no_grad():
        expected = F.normalize(model.encode_text(tokenizer(seen)), dim=1)
    torch.testing.assert_close(embeddings, expected)
    assert embeddings.shape == (2, 64)


def test_a_text_head_is_built_offline_from_a_local_text_tower(tiny_clip):
    name, weights, model = tiny_clip
    settings = ModelSettings(
        backbone="test_vit", head="normed", head_init="text", text_model=name, text_weights=weights
    )
    classifier = build_model(settings, 2, 3)
    init_text(classifier, settings, ["dog", "cat"])
    tokenizer = open_clip.get_tokenizer(name)
    with torch.no_grad():
        expected = F.normalize(model.encode_text(tokenizer(["a photo of a dog.", "a photo of a cat."])), dim=1)
    torch.testing.assert_close(classifier.head.weight.detach(), expected)


def test_a_text_tower_of_another_width_is_refused(tiny_clip):
    name, weights, _ = tiny_clip
    settings = ModelSettings(
        backbone="resnet8_cifar", head="normed", head_init="text", text_model=name, text_weights=weights
    )
    classifier = build_model(settings, 2, 3)
    classifier.head.weight.data = torch.zeros(2, 32)  # a backbone of 32 features
    with pytest.raises(SettingError, match="embedding width must be the backbone's"):
        init_text(classifier, settings, ["dog", "cat"])
