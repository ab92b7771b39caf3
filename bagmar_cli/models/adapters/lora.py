"""LoRA (Hu et al., ICLR 2022) through peft: its LoraConfig injected into the attention and MLP linears of a timm
backbone (ViT: attn.qkv, attn.proj, mlp.fc1, mlp.fc2; ConvNeXt: mlp.fc1, mlp.fc2), merged back by peft."""

from __future__ import annotations

from torch import nn

from bagmar_cli.errors import SettingError
from bagmar_cli.models.extras import require

# a regex over module names: timm's attention and MLP linears, not patch_embed.proj (a convolution)
TARGETS = r".*\.(attn\.(qkv|proj)|mlp\.(fc1|fc2))$"


def add_lora(backbone: nn.Module, rank: int, alpha: float, dropout: float) -> nn.Module:
    """Inject LoRA adapters (peft's `inject_adapter_in_model`) into `backbone` in place; returns it."""
    peft = require("peft", "model.peft", "lora")
    config = peft.LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=TARGETS)
    try:
        injected: nn.Module = peft.inject_adapter_in_model(config, backbone)
    except ValueError as exc:  # peft: "Target modules ... not found in the base model"
        raise SettingError(
            f'`model.peft` = "lora" found no attention or MLP linears (qkv, proj, fc1, fc2) in backbone '
            f'{type(backbone).__name__}: use a ViT or ConvNeXt, or `model.peft` = "adaptformer" ({exc})'
        ) from None
    return injected


def merge_lora(module: nn.Module) -> int:
    """Merge every LoRA layer of `module` into its base linear (peft's `merge`) and put the plain linear back in its
    place; returns how many were merged (none without peft installed: then no LoRA layer can exist)."""
    try:
        from peft.tuners.tuners_utils import BaseTunerLayer
    except ImportError:
        return 0

    merged = 0
    for name, layer in list(module.named_modules()):
        if not isinstance(layer, BaseTunerLayer):
            continue
        layer.merge()
        parent_name, _, child = name.rpartition(".")
        setattr(module.get_submodule(parent_name), child, layer.get_base_layer())
        merged += 1
    return merged
