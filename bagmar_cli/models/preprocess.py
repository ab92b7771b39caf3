"""A pretrained backbone's own preprocessing: timm's data config (input size, interpolation, mean, std, crop
fraction) from its pretrained cfg, so a CLIP or `mean = 0.5` ViT sees inputs like those it was trained on.

Pure: nothing is downloaded, timm's registry holds every tag's cfg. A backbone without pretrained weights (neither
`model.pretrained` nor `model.weights`) or without a cfg in timm's registry has none: the dataset's own
statistics apply, as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import timm
from timm.data.config import resolve_data_config

from bagmar_cli.settings import ModelSettings

OVERRIDABLE = ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")


@dataclass(frozen=True)
class BackboneDataConfig:
    """What timm's `resolve_data_config` decides for a backbone: (C, H, W), resampling, normalisation, crop."""

    input_size: tuple[int, int, int]
    interpolation: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_pct: float
    crop_mode: str


def pretrained_cfg(backbone: str) -> Any | None:
    """timm's pretrained cfg of `backbone` ("arch" or "arch.tag"; the default tag for "arch"), or None."""
    try:
        return timm.models.get_pretrained_cfg(backbone)
    except (RuntimeError, ValueError):
        return None


def backbone_data_config(settings: ModelSettings, overrides: dict[str, Any] | None = None) -> BackboneDataConfig | None:
    """The data config of a backbone that brings pretrained weights, `overrides` (keys of OVERRIDABLE) winning;
    None when it brings none or timm records no cfg for it."""
    if not settings.pretrained and settings.weights is None:
        return None
    cfg = pretrained_cfg(settings.backbone)
    if cfg is None:
        return None
    given = {key: value for key, value in (overrides or {}).items() if key in OVERRIDABLE and value is not None}
    resolved = resolve_data_config(args=given, pretrained_cfg=cfg.to_dict())  # type: ignore[no-untyped-call]
    return BackboneDataConfig(
        input_size=tuple(int(v) for v in resolved["input_size"]),  # type: ignore[arg-type]  # always (C, H, W)
        interpolation=str(resolved["interpolation"]),
        mean=tuple(float(v) for v in resolved["mean"]),
        std=tuple(float(v) for v in resolved["std"]),
        crop_pct=float(resolved["crop_pct"]),
        crop_mode=str(resolved.get("crop_mode", "center")),
    )


def saw_imagenet_test_classes(settings: ModelSettings, dataset: str | None) -> bool:
    """True when an ImageNet-LT run starts from weights whose tag says they were trained on ImageNet-1k
    (`in1k`, `in12k_ft_in1k`, `in21k_ft_in1k`...): they have seen every class of ImageNet-LT's test images at full
    size, so the run's numbers are not comparable to the long-tailed literature."""
    if dataset != "imagenet_lt" or (not settings.pretrained and settings.weights is None):
        return False
    cfg = pretrained_cfg(settings.backbone)
    tag = str(getattr(cfg, "tag", "") or "") if cfg is not None else settings.backbone.partition(".")[2]
    return "in1k" in tag.split("_")
