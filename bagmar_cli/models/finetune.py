"""Fine-tuning a backbone through adapters (`model.peft`): adding them, counting what trains, the small state a
user shares (adapters + head + other trained tensors), and the merged model an export writes.

A model's full state dict keeps the base weights and the adapters unmerged: `build_model` adds the adapters to a
freshly built backbone deterministically, so that state dict loads back into `build_model(settings)` alone.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from bagmar_cli.errors import CheckpointError, SettingError
from bagmar_cli.models.adapters.adaptformer import add_adaptformer, count_mlp_blocks
from bagmar_cli.models.adapters.lora import add_lora, merge_lora
from bagmar_cli.settings import ModelSettings

LORA_RANK = 8  # our choice: on a ViT-B/16's qkv and proj, 0.44 M parameters (0.5 %) train besides the head


def lift_rank(num_classes: int, blocks: int) -> int:
    """LIFT's adapter width: 2^floor(log2(classes / (2 blocks))), at least 1 (ImageNet-LT on ViT-B: 32)."""
    return int(2 ** max(0, int(math.log2(num_classes / (2 * max(blocks, 1))))))


def add_adapters(backbone: nn.Module, settings: ModelSettings, num_classes: int) -> nn.Module:
    """`backbone` with the adapters `settings.peft` names added in place (the same ones every time)."""
    if settings.peft == "none":
        return backbone
    if settings.peft == "lora":
        rank = settings.peft_rank or LORA_RANK
        return add_lora(backbone, rank, settings.lora_alpha, settings.lora_dropout, settings.lora_targets)
    rank = settings.peft_rank or lift_rank(num_classes, count_mlp_blocks(backbone))
    if add_adaptformer(backbone, rank, settings.adaptformer_scale) == 0:
        raise SettingError(
            f'`model.peft` = "adaptformer" found no block with a norm and a linear MLP in backbone '
            f'{type(backbone).__name__}: use a ViT or ConvNeXt, or `model.peft` = "lora"'
        )
    return backbone


def parameter_counts(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameters of `model`, adapters included."""
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def adapter_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The tensors that train (requires_grad, as models.freeze.train_only set them: adapters, head, norms or
    biases if asked), keyed as in `model.state_dict()`: what a fine-tuned model adds to its base weights."""
    trained = {name for name, param in model.named_parameters() if param.requires_grad}
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items() if name in trained}


def load_adapter_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load an `adapter_state_dict` onto `model` (built from the same settings, holding the same base weights);
    CheckpointError when a key is not the model's or a shape differs."""
    own = model.state_dict()
    unknown = sorted(state.keys() - own.keys())
    shapes = sorted(key for key in state.keys() & own.keys() if state[key].shape != own[key].shape)
    if unknown or shapes:
        problem = f"unknown keys {unknown[:5]}" if unknown else f"shapes differ for {shapes[:5]}"
        raise CheckpointError(
            f"adapter state does not fit this model (`model.peft` and `model.peft_rank` as when saved?): {problem}"
        )
    model.load_state_dict(state, strict=False)


def merged(model: nn.Module) -> nn.Module:
    """A copy of `model` with LoRA merged into its linears (peft's merge): plain timm and torch modules, no peft
    module left, the same outputs. AdaptFormer adapters stay as their own small modules."""
    copied = copy.deepcopy(model)
    merge_lora(copied)
    return copied
