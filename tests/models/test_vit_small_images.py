"""vit_tiny_28: registered with timm, its 28x28 patch grid, and the block layout LoRA and AdaptFormer adapt."""

import pytest
import timm
import torch

import bagmar_cli.models  # noqa: F401  (registers vit_tiny_28)
from bagmar_cli.errors import SettingError
from bagmar_cli.models import build_model
from bagmar_cli.models.finetune import parameter_counts
from bagmar_cli.settings import ModelSettings


def test_registered_with_its_grid_and_size():
    model = timm.create_model("vit_tiny_28", num_classes=0, in_chans=1)
    assert model.patch_embed.grid_size == (4, 4) and model.num_features == 64 and len(model.blocks) == 4
    tokens = model.forward_features(torch.randn(2, 1, 28, 28))
    assert tokens.shape == (2, 17, 64)  # 16 patches and the class token
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 64)  # num_classes 0: pooled features
    assert 0.19e6 < sum(p.numel() for p in model.parameters()) < 0.22e6


def test_blocks_have_the_layout_the_adapters_name():
    names = {name for name, _ in timm.create_model("vit_tiny_28", num_classes=0).named_modules()}
    for part in ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2", "norm2"):
        assert f"blocks.3.{part}" in names


@pytest.mark.parametrize("peft", ["lora", "adaptformer"])
def test_adapters_start_equal_to_the_base_model(peft):
    torch.manual_seed(0)
    base = build_model(ModelSettings(backbone="vit_tiny_28"), 5, 3)
    torch.manual_seed(0)
    adapted = build_model(ModelSettings(backbone="vit_tiny_28", peft=peft, peft_rank=8), 5, 3)
    x = torch.randn(3, 3, 28, 28)
    base.eval(), adapted.eval()
    # LoRA's B and AdaptFormer's up-projection start at zero (the heads differ: the adapters drew random numbers)
    torch.testing.assert_close(adapted.features(x), base.features(x))
    assert parameter_counts(adapted)[1] > parameter_counts(base)[1]


def test_has_no_pretrained_weights():
    with pytest.raises(SettingError, match="no pretrained weights"):
        build_model(ModelSettings(backbone="vit_tiny_28", pretrained=True), 5, 1)
