"""Fine-tuning through adapters (models/finetune.py, freeze.train_only): what trains, what stays bit-identical,
the parameter counts, the full and the adapters-only state, and the merged model an export writes."""

import re

import pytest
import torch
from pydantic import ValidationError

from bagmar_cli.errors import CheckpointError, SettingError
from bagmar_cli.models import build_model
from bagmar_cli.models.adapters import is_adapter
from bagmar_cli.models.finetune import adapter_state_dict, lift_rank, load_adapter_state, merged, parameter_counts
from bagmar_cli.models.freeze import train_only
from bagmar_cli.settings import ModelSettings

SIZES = {"test_vit": 160, "test_convnext": 32}
CASES = [("test_vit", "lora"), ("test_vit", "adaptformer"), ("test_convnext", "lora"), ("test_convnext", "adaptformer")]


def _model(backbone, peft, seed=0, **settings):
    torch.manual_seed(seed)
    if backbone == "test_convnext" and peft == "lora":
        settings.setdefault("lora_targets", ["fc1", "fc2"])  # a ConvNeXt has no attention
    model_settings = ModelSettings(backbone=backbone, peft=peft, peft_rank=4, head="normed", **settings)
    model = build_model(model_settings, 5, 3)
    train_only(model, model_settings)
    return model, model_settings


def _batch(backbone, seed=1):
    generator = torch.Generator().manual_seed(seed)
    side = SIZES[backbone]
    return torch.randn(4, 3, side, side, generator=generator), torch.tensor([0, 1, 2, 3])


def _sgd_steps(model, backbone, steps=3):
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    x, y = _batch(backbone)
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()


@pytest.mark.parametrize(("backbone", "peft"), CASES)
def test_base_weights_are_bit_identical_after_sgd_steps_and_adapters_and_head_change(backbone, peft):
    model, _ = _model(backbone, peft)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    _sgd_steps(model, backbone)
    changed = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    base = [name for name in before if name.startswith("backbone.") and not is_adapter(name)]
    assert base and not changed & set(base)
    assert "head.weight" in changed
    adapters = [name for name in before if is_adapter(name)]
    assert adapters and changed & set(adapters)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {*adapters, "head.weight"}


def test_a_lora_linear_is_w_x_plus_alpha_over_rank_b_a_x():
    model, _ = _model("test_vit", "lora", lora_alpha=2.0)
    qkv = model.backbone.blocks[0].attn.qkv
    with torch.no_grad():
        qkv.lora_B["default"].weight.normal_()  # peft starts B at zero
    a, b = qkv.lora_A["default"].weight, qkv.lora_B["default"].weight
    base = qkv.base_layer
    x = torch.randn(3, 64)
    expected = x @ base.weight.T + base.bias + (2.0 / 4) * (x @ a.T @ b.T)
    torch.testing.assert_close(qkv(x), expected)
    assert a.shape == (4, 64) and b.shape == (192, 4)


def test_norms_and_biases_train_when_asked():
    model, _ = _model("test_vit", "lora", train_norms=True, train_biases=True)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert "backbone.blocks.0.norm1.weight" in trainable and "backbone.norm.bias" in trainable
    assert "backbone.blocks.0.attn.qkv.base_layer.bias" in trainable
    assert "backbone.blocks.0.attn.qkv.base_layer.weight" not in trainable
    assert "backbone.patch_embed.proj.weight" not in trainable


def test_biases_of_a_frozen_backbone_train_as_bitfit():
    settings = ModelSettings(backbone="resnet20_cifar", freeze="backbone", train_biases=True)
    model = build_model(settings, 10, 3)
    frozen_norms = train_only(model, settings)
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    biases = [name for name, _ in model.backbone.named_parameters() if name.endswith("bias")]
    assert len(biases) == 19 and trainable == [f"backbone.{name}" for name in biases] + ["head.weight", "head.bias"]
    assert frozen_norms == []  # every BatchNorm has a trainable bias: none is held in eval mode


def test_without_peft_train_only_is_model_freeze():
    settings = ModelSettings(backbone="resnet20_cifar", freeze="backbone")
    model = build_model(settings, 10, 3)
    assert len(train_only(model, settings)) == 19
    assert [name for name, p in model.named_parameters() if p.requires_grad] == ["head.weight", "head.bias"]


def test_parameter_counts_by_hand():
    model, _ = _model("test_vit", "adaptformer")
    dim, rank, blocks = 64, 4, 6
    # per block: LayerNorm (2 dim) + down (dim rank + rank) + up (rank dim + dim) + scale; head: 5 x dim
    adapters = blocks * (2 * dim + dim * rank + rank + rank * dim + dim + 1)
    trainable, total = parameter_counts(model)
    assert trainable == adapters + 5 * dim
    assert total == 306_240 + adapters + 5 * dim  # test_vit's own parameters


def test_lifts_default_width():
    assert lift_rank(1000, 12) == 32  # ImageNet-LT on ViT-B/16: 2^floor(log2(41.7))
    assert lift_rank(8142, 12) == 256  # iNaturalist 2018
    assert lift_rank(10, 12) == 1
    model = build_model(ModelSettings(backbone="test_vit", peft="adaptformer"), 100, 3)
    assert model.backbone.blocks[0].mlp.adaptformer.down_proj.out_features == lift_rank(100, 6) == 8


@pytest.mark.parametrize(("backbone", "peft"), CASES)
def test_the_full_state_with_adapters_unmerged_rebuilds_from_the_settings_alone(backbone, peft):
    model, settings = _model(backbone, peft)
    _sgd_steps(model, backbone, steps=1)
    torch.manual_seed(123)  # another seed: every tensor must come from the state dict
    rebuilt = build_model(settings, 5, 3)
    rebuilt.load_state_dict(model.state_dict())
    x, _ = _batch(backbone, seed=2)
    torch.testing.assert_close(rebuilt.eval()(x), model.eval()(x), rtol=0, atol=0)


@pytest.mark.parametrize("peft", ["lora", "adaptformer"])
def test_the_adapter_state_is_small_and_loads_onto_the_same_base_weights(peft):
    model, _ = _model("test_vit", peft)
    _sgd_steps(model, "test_vit", steps=1)
    small = adapter_state_dict(model)
    full = model.state_dict()
    assert set(small) == {name for name, p in model.named_parameters() if p.requires_grad}
    assert sum(t.numel() for t in full.values()) > 10 * sum(t.numel() for t in small.values())
    fresh, _ = _model("test_vit", peft, seed=0)  # the same base weights, untrained adapters and head
    load_adapter_state(fresh, small)
    x, _ = _batch("test_vit", seed=2)
    torch.testing.assert_close(fresh.eval()(x), model.eval()(x), rtol=0, atol=0)


def test_an_adapter_state_of_another_rank_is_refused():
    model, _ = _model("test_vit", "lora")
    other = build_model(ModelSettings(backbone="test_vit", peft="lora", peft_rank=2, head="normed"), 5, 3)
    with pytest.raises(CheckpointError, match="shapes differ"):
        load_adapter_state(other, adapter_state_dict(model))


@pytest.mark.parametrize("backbone", ["test_vit", "test_convnext"])
def test_the_merged_model_has_no_peft_module_and_the_same_outputs(backbone):
    from peft.tuners.tuners_utils import BaseTunerLayer

    model, _ = _model(backbone, "lora")
    _sgd_steps(model, backbone, steps=2)
    plain = merged(model).eval()
    assert not any(isinstance(m, BaseTunerLayer) for m in plain.modules())
    assert not any("lora" in name for name in plain.state_dict())
    assert any(isinstance(m, BaseTunerLayer) for m in model.modules())  # the model itself is left unmerged
    x, _ = _batch(backbone, seed=2)
    torch.testing.assert_close(plain(x), model.eval()(x), rtol=1e-5, atol=1e-5)


def test_adaptformer_stays_its_own_module_when_merged():
    model, _ = _model("test_vit", "adaptformer")
    assert any(is_adapter(name) for name in merged(model).state_dict())


def test_lora_adapts_the_attention_linears_by_default_at_rank_8():
    model = build_model(ModelSettings(backbone="test_vit", peft="lora"), 5, 3)
    adapted = {name.rsplit(".lora_A", 1)[0] for name, _ in model.named_parameters() if ".lora_A." in name}
    assert adapted == {
        f"backbone.blocks.{i}.attn.{layer}" for i in range(len(model.backbone.blocks)) for layer in ("qkv", "proj")
    }
    assert model.backbone.blocks[0].attn.qkv.lora_A["default"].weight.shape[0] == 8


def test_lora_on_a_backbone_without_the_named_linears_is_one_setting_error():
    with pytest.raises(SettingError, match=re.escape('`model.peft` = "lora" found none of the linears')):
        build_model(ModelSettings(backbone="resnet8_cifar", peft="lora"), 10, 3)
    with pytest.raises(SettingError, match=re.escape("(qkv, proj)")):
        build_model(ModelSettings(backbone="test_convnext", peft="lora"), 10, 3)
    with pytest.raises(SettingError, match=re.escape('`model.peft` = "adaptformer" found no block')):
        build_model(ModelSettings(backbone="resnet8_cifar", peft="adaptformer"), 10, 3)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"peft": "lora", "freeze": "backbone"}, 'peft = "lora" freezes the base weights itself'),
        ({"train_norms": True}, "train_norms and train_biases add to what peft or freeze leaves trainable"),
        ({"head_init": "class_mean"}, 'head_init = "class_mean" writes a cosine head'),
        ({"head": "normed", "text_weights": "t.safetensors"}, 'text_weights gives head_init = "text"'),
        ({"head": "normed", "head_init": "text", "text_prompt": "a photo"}, 'text_prompt needs "{}"'),
    ],
)
def test_contradictory_settings_are_refused(settings, message):
    with pytest.raises(ValidationError, match=message):
        ModelSettings(**settings)
