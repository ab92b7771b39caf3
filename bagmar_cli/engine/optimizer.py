"""The SGD optimiser over the trainable parameters, with the head in its own group when it has its own settings."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from bagmar_cli.settings import OptimSettings


def param_groups(model: nn.Module, optim: OptimSettings) -> list[dict[str, Any]]:
    """The parameters that learn (frozen ones are left out): one group, or backbone then head when `optim.head_lr`
    or `optim.head_weight_decay` is set (None: the backbone's). Empty groups are dropped."""
    trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    if optim.head_lr is None and optim.head_weight_decay is None:
        return [{"params": [p for _, p in trainable]}]
    head = [p for name, p in trainable if name.startswith("head.")]
    backbone = [p for name, p in trainable if not name.startswith("head.")]
    head_group = {
        "params": head,
        "lr": optim.lr if optim.head_lr is None else optim.head_lr,
        "weight_decay": optim.weight_decay if optim.head_weight_decay is None else optim.head_weight_decay,
    }
    return [group for group in ({"params": backbone}, head_group) if group["params"]]


def build_optimizer(model: nn.Module, optim: OptimSettings) -> torch.optim.SGD:
    """SGD with momentum over `param_groups`; groups without their own lr and weight decay take `optim`'s."""
    return torch.optim.SGD(
        param_groups(model, optim),
        lr=optim.lr,
        momentum=optim.momentum,
        weight_decay=optim.weight_decay,
        nesterov=optim.nesterov,
    )
