"""Freezing part of the backbone (`model.freeze`): parameters that stop learning, and BatchNorms that stop moving.

"backbone" freezes all of it (decoupling's classifier re-training); "all_but_last_stage" keeps the last stage and
what follows it trainable (fine-tuning the last stage, as the Places-LT protocol does). Stages are timm's
`feature_info`: the last stage is every parameter registered after those of the next-to-last stage's module.
"""

from __future__ import annotations

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from bagmar_cli.errors import SettingError


def freeze(model: nn.Module, mode: str) -> list[nn.Module]:
    """Set requires_grad False on the parameters `mode` freezes in `model.backbone`; returns the BatchNorms whose
    parameters are all frozen (the trainer keeps them in eval mode unless `model.frozen_bn = "train"`)."""
    backbone: nn.Module = model.backbone  # type: ignore[assignment]  # a Classifier
    if mode == "none":
        return []
    names = [name for name, _ in backbone.named_parameters()]
    frozen = set(names if mode == "backbone" else names[: _last_stage_start(backbone, names)])
    for name, param in backbone.named_parameters():
        param.requires_grad_(name not in frozen)
    return [
        module
        for module in backbone.modules()
        if isinstance(module, _BatchNorm) and not any(p.requires_grad for p in module.parameters())
    ]


def _last_stage_start(backbone: nn.Module, names: list[str]) -> int:
    """Index in `names` (registration order) of the first parameter after the next-to-last stage's."""
    stages = [info["module"] for info in getattr(backbone, "feature_info", None) or [] if "module" in info]
    if len(stages) < 2:
        raise SettingError(
            f'model.freeze = "all_but_last_stage": backbone {type(backbone).__name__} does not list its stages '
            '(timm feature_info); use "backbone" or "none"'
        )
    prefix = stages[-2] + "."
    inside = [i for i, name in enumerate(names) if name.startswith(prefix)]
    if not inside:
        raise SettingError(f'model.freeze = "all_but_last_stage": stage {stages[-2]!r} holds no parameters')
    return inside[-1] + 1
