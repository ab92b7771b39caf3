"""LoRA (Hu et al., ICLR 2022) through peft: its LoraConfig injected into the attention and MLP linears of a timm
backbone that `model.lora_targets` names (ViT: attn.qkv, attn.proj, mlp.fc1, mlp.fc2; ConvNeXt: mlp.fc1, mlp.fc2),
merged back by peft."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from bagmar_cli.errors import SettingError
from bagmar_cli.models.extras import require

# timm's module paths of each target linear in a block (not patch_embed.proj, a convolution)
TARGETS = {"qkv": r"attn\.qkv", "proj": r"attn\.proj", "fc1": r"mlp\.fc1", "fc2": r"mlp\.fc2"}


def target_regex(targets: Sequence[str]) -> str:
    """peft's `target_modules` regex over module names for the named linears of every block."""
    return rf".*\.({'|'.join(TARGETS[name] for name in targets)})$"


def add_lora(
    backbone: nn.Module, rank: int, alpha: float, dropout: float, targets: Sequence[str] = ("qkv", "proj")
) -> nn.Module:
    """Inject LoRA adapters (peft's `inject_adapter_in_model`) into `backbone`'s `targets` in place; returns it."""
    peft = require("peft", "model.peft", "lora")
    config = peft.LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=target_regex(targets))
    try:
        injected: nn.Module = peft.inject_adapter_in_model(config, backbone)
    except ValueError as exc:  # peft: "Target modules ... not found in the base model"
        raise SettingError(
            f'`model.peft` = "lora" found none of the linears `model.lora_targets` names ({", ".join(targets)}) in '
            f"backbone {type(backbone).__name__}: name others (a ConvNeXt has fc1 and fc2 only), use a ViT or "
            f'ConvNeXt, or `model.peft` = "adaptformer" ({exc})'
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
