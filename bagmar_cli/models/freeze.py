"""Freezing part of the backbone (`model.freeze`): parameters that stop learning, and BatchNorms that stop moving.

"backbone" freezes all of it (decoupling's classifier re-training); "all_but_last_stage" keeps the last stage and
what follows it trainable (fine-tuning the last stage, as the Places-LT protocol does). Stages are timm's
`feature_info`: the last stage is every parameter registered after those of the next-to-last stage's module.
Under `model.peft` the base weights are frozen and the adapters train; `model.train_norms` and `model.train_biases`
add the backbone's norm layers and biases to what trains. The head always trains. `train_only` is the one place
that applies these rules.
"""

from __future__ import annotations

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from bagmar_cli.errors import SettingError
from bagmar_cli.models.adapters import is_adapter
from bagmar_cli.settings import ModelSettings

NORMS = (nn.LayerNorm, nn.GroupNorm, _BatchNorm)  # timm's LayerNorm, LayerNorm2d and GroupNorm1 subclass these


def train_only(model: nn.Module, settings: ModelSettings) -> list[nn.Module]:
    """Set what trains in `model.backbone` by `settings` (peft or freeze, then norms and biases if asked); returns
    the BatchNorms whose parameters are all frozen, as `freeze` does."""
    backbone: nn.Module = model.backbone  # type: ignore[assignment]  # a Classifier
    if settings.peft != "none":
        for name, param in backbone.named_parameters():
            param.requires_grad_(is_adapter(name))
    else:
        freeze(model, settings.freeze)
    for module in backbone.modules():
        for name, param in module.named_parameters(recurse=False):
            norm = settings.train_norms and isinstance(module, NORMS)
            param.requires_grad_(param.requires_grad or norm or (settings.train_biases and name == "bias"))
    return _frozen_batchnorms(backbone)


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
    return _frozen_batchnorms(backbone)


def _frozen_batchnorms(backbone: nn.Module) -> list[nn.Module]:
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
