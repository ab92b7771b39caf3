"""A tiny Vision Transformer for 28x28 images, registered in timm's registry as `vit_tiny_28`.

It has timm's block layout (`attn.qkv`, `attn.proj`, `mlp.fc1`, `mlp.fc2`, `norm2`), so LoRA and AdaptFormer
(`model.peft`) apply to it as to a ViT-B/16, at a size a CPU trains in seconds an epoch: the backbone of the
fine-tuning simulation on Fashion-MNIST (benchmarks/finetune_sim.py). It has no pretrained weights; a bagmar
checkpoint's backbone loads into it through `model.weights`.
"""

from __future__ import annotations

from typing import Any

from timm.models import register_model
from timm.models.vision_transformer import VisionTransformer

# bagmar's choice for 28x28 grey images on a CPU: 7x7 patches (a 4x4 grid and a class token), width 64, 4 blocks of
# 2 heads: 0.2 M parameters, about 3x cheaper a step than 4x4 patches (measured on one thread).
FACTORY_ONLY = (
    "pretrained_cfg",
    "pretrained_cfg_overlay",
    "cache_dir",
)  # what timm.create_model passes to every builder
TINY_28 = {"img_size": 28, "patch_size": 7, "embed_dim": 64, "depth": 4, "num_heads": 2}


def _create(arch: dict[str, Any], pretrained: bool, **kwargs: Any) -> VisionTransformer:
    if pretrained:
        raise ValueError("vit_tiny_28 has no pretrained weights; set model.pretrained = false (model.weights loads)")
    for key in FACTORY_ONLY:
        kwargs.pop(key, None)
    return VisionTransformer(**(arch | kwargs))


@register_model
def vit_tiny_28(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """ViT for 28x28 images: 7x7 patches, width 64, 4 blocks of 2 heads, class-token pooling (0.2 M parameters)."""
    return _create(TINY_28, pretrained, **kwargs)
