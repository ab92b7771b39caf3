"""The model bagmar trains: a timm backbone producing features, then a separate classifier head."""

from __future__ import annotations

from contextlib import nullcontext
from typing import cast

import timm
import torch
from torch import nn

from bagmar_cli.choices import did_you_mean
from bagmar_cli.errors import DownloadError, SettingError
from bagmar_cli.models.finetune import add_adapters
from bagmar_cli.models.heads import HEADS, Head
from bagmar_cli.models.preprocess import pretrained_cfg
from bagmar_cli.models.pretrained import hub_access, pretrained_failure
from bagmar_cli.models.weights import holds_adapters, load_backbone_weights
from bagmar_cli.settings import ModelSettings

# where a network's input size comes from, by the kind of dataset: the setting (or command) that changes it
SIZE_SOURCES = {
    True: "set data.crop = {side} (the side of the square the network sees)",
    False: "prepare the dataset at {side}x{side} pixels",
}


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
    """Create the backbone by timm name (num_classes=0: pooled features; `model.features = "projected"`: its own
    pretrained head's outputs), load `model.weights` into it when set,
    add the adapters of `model.peft` (unmerged, the same every time; before loading a checkpoint that holds them),
    and attach the head."""
    if not timm.is_model(settings.backbone):
        hint = did_you_mean(settings.backbone, timm.list_models())
        raise SettingError(f"unknown backbone {settings.backbone!r}{hint}; any timm model name works")
    projected = projection_width(settings) if settings.features == "projected" else 0
    with hub_access() if settings.pretrained else nullcontext(True) as online:
        try:
            backbone = timm.create_model(
                settings.backbone,
                pretrained=settings.pretrained,
                num_classes=projected,  # 0: pooled features
                in_chans=in_chans,
                drop_rate=settings.drop_rate,
            )
        except OSError as exc:  # the hub's and urllib's errors: weights that could not be had
            if settings.pretrained:
                raise DownloadError(pretrained_failure(settings.backbone, online, exc)) from None
            raise SettingError(f"cannot create backbone {settings.backbone!r}: {exc}") from None
        except (RuntimeError, ValueError) as exc:
            raise SettingError(f"cannot create backbone {settings.backbone!r}: {exc}") from None
    adapted_weights = settings.weights is not None and holds_adapters(settings.weights)
    if settings.weights is not None and not adapted_weights:
        load_backbone_weights(backbone, settings.weights)
    backbone = add_adapters(backbone, settings, num_classes)
    if settings.weights is not None and adapted_weights:  # a peft run's checkpoint: base and adapters, unmerged
        load_backbone_weights(backbone, settings.weights)
    # the projection's width, else the pooled features' (timm sets an int; torch types attributes as Tensor | Module)
    num_features = projected or cast(int, backbone.num_features)
    return Classifier(backbone, HEADS[settings.head](num_features, num_classes, settings.head_scale))


def projection_width(settings: ModelSettings) -> int:
    """The width of the backbone's own pretrained head (`model.features = "projected"`: a CLIP tower's 512-wide
    image projection); SettingError when its pretrained config records no head."""
    cfg = pretrained_cfg(settings.backbone)
    width = int(cfg.num_classes or 0) if cfg is not None else 0
    if width <= 0:
        raise SettingError(
            f'`model.features` = "projected" keeps the backbone\'s own pretrained head, and {settings.backbone!r} '
            'has none: use a CLIP image tower (e.g. vit_base_patch16_clip_224.openai) or `model.features` = "pooled"'
        )
    return width


def fixed_input_size(backbone: str) -> tuple[int, int] | None:
    """(height, width) a timm backbone accepts only (a ViT's patch grid, a Swin's windows), from its pretrained
    config; None when it takes any size (CNNs pool globally) or timm records none."""
    try:
        cfg = timm.models.get_pretrained_cfg(backbone)
    except (RuntimeError, ValueError):
        return None
    if cfg is None or not cfg.fixed_input_size:
        return None
    _, height, width = cfg.input_size
    return int(height), int(width)


def check_input_size(settings: ModelSettings, size: tuple[int, int], *, image_files: bool) -> None:
    """SettingError before a run starts when `settings.backbone` takes one input size only and the dataset gives
    another (`size`, the (height, width) it sees; `image_files`: a file-list dataset, whose crop is a setting)."""
    fixed = fixed_input_size(settings.backbone)
    if fixed is None or fixed == tuple(size):
        return
    change = SIZE_SOURCES[image_files].format(side=fixed[0])
    raise SettingError(
        f"model.backbone {settings.backbone!r} takes {fixed[0]}x{fixed[1]} images only and this dataset gives "
        f"{size[0]}x{size[1]}: {change}, or set model.backbone to one that takes any size (a CNN such as resnet18)"
    )
