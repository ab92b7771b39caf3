"""The model bagmar trains: a timm backbone producing features, then a separate classifier head."""

from __future__ import annotations

from typing import cast

import timm
import torch
from torch import nn

from bagmar_cli.choices import did_you_mean
from bagmar_cli.errors import UsageError
from bagmar_cli.models.heads import HEADS, Head
from bagmar_cli.models.weights import load_backbone_weights
from bagmar_cli.settings import ModelSettings


class Classifier(nn.Module):
    """Backbone (features) + head (logits); `features` and `head` are used by τ-norm and export."""

    def __init__(self, backbone: nn.Module, head: Head) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def features(self, x: torch.Tensor) -> torch.Tensor:
        features: torch.Tensor = self.backbone(x)
        return features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.head(self.backbone(x))
        return logits


def build_model(settings: ModelSettings, num_classes: int, in_chans: int) -> Classifier:
    """Create the backbone by timm name (num_classes=0: pooled features), load `model.weights` into it when set,
    and attach the head."""
    if not timm.is_model(settings.backbone):
        hint = did_you_mean(settings.backbone, timm.list_models())
        raise UsageError(f"unknown backbone {settings.backbone!r}{hint}; any timm model name works")
    try:
        backbone = timm.create_model(
            settings.backbone,
            pretrained=settings.pretrained,
            num_classes=0,
            in_chans=in_chans,
            drop_rate=settings.drop_rate,
        )
    except (OSError, RuntimeError, ValueError) as exc:
        raise UsageError(f"cannot create backbone {settings.backbone!r}: {exc}") from None
    if settings.weights is not None:
        load_backbone_weights(backbone, settings.weights)
    num_features = cast(int, backbone.num_features)  # timm sets it as an int; torch types attributes as Tensor | Module
    return Classifier(backbone, HEADS[settings.head](num_features, num_classes, settings.head_scale))
