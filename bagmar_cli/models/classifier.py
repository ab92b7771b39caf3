"""The model bagmar trains: a timm backbone producing features, then a separate classifier head."""

from __future__ import annotations

import timm
import torch
from torch import nn

from bagmar_cli.choices import did_you_mean
from bagmar_cli.errors import UsageError
from bagmar_cli.models.heads import HEADS
from bagmar_cli.models.weights import load_backbone_weights
from bagmar_cli.settings import ModelSettings


class Classifier(nn.Module):
    """Backbone (features) + head (logits); `features` and `head` are used by τ-norm and export."""

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


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
    return Classifier(backbone, HEADS[settings.head](backbone.num_features, num_classes, settings.head_scale))
