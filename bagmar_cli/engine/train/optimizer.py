"""The optimiser (SGD or AdamW, through timm's `create_optimizer_v2`) over the trainable parameters, with the head
in its own group when it has its own settings, layer-wise lr decay for the backbone (timm's param groups), and the
learning rates it starts from: as stated, or scaled to the run's global batch."""

from __future__ import annotations

from typing import Any

import torch
from timm.optim._optim_factory import create_optimizer_v2
from timm.optim._param_groups import param_groups_layer_decay
from torch import nn

from bagmar_cli.console import warn
from bagmar_cli.settings import OptimSettings


def effective_lrs(optim: OptimSettings, batch: int) -> tuple[float, float | None]:
    """(lr, head_lr) of a run whose optimiser steps average over `batch` images: as stated, or both times
    batch / optim.lr_batch under optim.lr_scaling = "linear" (Goyal et al. 2017). head_lr None: it follows lr.
    These are the peaks the schedule warms up to and decays from; schedule.min_lr stays as stated."""
    factor = batch / optim.lr_batch if optim.lr_scaling == "linear" and optim.lr_batch is not None else 1.0
    return optim.lr * factor, None if optim.head_lr is None else optim.head_lr * factor


def lr_rule_line(optim: OptimSettings, batch: int, processes: int) -> str | None:
    """The sentence that says which rule sets the run's lr when optim.lr_batch is not the run's global batch
    `batch` (`processes` each taking batch / processes); None when there is nothing to say."""
    if optim.lr_batch is None or optim.lr_batch == batch:
        return None
    stated, verb, pronoun = f"optim.lr {optim.lr:.6g}", "is", "it"
    if optim.head_lr is not None:
        stated, verb, pronoun = f"{stated} and optim.head_lr {optim.head_lr:.6g}", "are", "them"
    split = f" ({processes} processes x {batch // processes})" if processes > 1 else ""
    said = f"{stated} {verb} stated for a global batch of {optim.lr_batch}; this run's is {batch}{split}"
    linear = _lrs(*effective_lrs(optim.model_copy(update={"lr_scaling": "linear"}), batch))
    if optim.lr_scaling == "linear":
        return f'{said}: scaled linearly to {linear} (optim.lr_scaling = "linear")'
    return f'{said}: keeping {pronoun} (optim.lr_scaling = "keep"; "linear" would give {linear})'


def _lrs(lr: float, head_lr: float | None) -> str:
    return f"{lr:.6g}" if head_lr is None else f"{lr:.6g} and {head_lr:.6g}"


def param_groups(model: nn.Module, optim: OptimSettings, lrs: tuple[float, float | None]) -> list[dict[str, Any]]:
    """The parameters that learn (frozen ones are left out): one group, or backbone then head when `optim.head_lr`
    or `optim.head_weight_decay` is set (None: the backbone's), or, with `optim.layer_decay`, the backbone's
    layer groups then the head. `lrs`: the run's (lr, head_lr) from `effective_lrs`. Empty groups are dropped."""
    lr, head_lr = lrs
    trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    if optim.head_lr is None and optim.head_weight_decay is None and optim.layer_decay is None:
        return [{"params": [p for _, p in trainable]}]
    head = [p for name, p in trainable if name.startswith("head.")]
    head_group = {
        "params": head,
        "lr": lr if head_lr is None else head_lr,
        "weight_decay": optim.weight_decay if optim.head_weight_decay is None else optim.head_weight_decay,
    }
    if optim.layer_decay is not None:
        backbone_groups = layer_decay_groups(model.get_submodule("backbone"), optim, lr, optim.layer_decay)
    else:
        backbone_groups = [{"params": [p for name, p in trainable if not name.startswith("head.")]}]
    return [group for group in (*backbone_groups, head_group) if group["params"]]


def layer_decay_groups(backbone: nn.Module, optim: OptimSettings, lr: float, decay: float) -> list[dict[str, Any]]:
    """timm's layer-wise lr decay over the backbone (its `group_matcher`: the stem lowest, the last block highest):
    layer k of L learns at lr * decay^(L - k); biases and norms without weight decay, as timm's fine-tuning
    recipes have them. The head above the last layer keeps lr."""
    no_decay = getattr(backbone, "no_weight_decay", None)
    skip = no_decay() if callable(no_decay) else ()
    groups = param_groups_layer_decay(
        backbone, weight_decay=optim.weight_decay, no_weight_decay_list=skip, layer_decay=decay
    )
    if len({g["lr_scale"] for g in groups}) == 1:
        warn(f"optim.layer_decay has no effect: timm finds no layers in {type(backbone).__name__} (no group_matcher)")
    return [{"params": g["params"], "lr": lr * g["lr_scale"], "weight_decay": g["weight_decay"]} for g in groups]


def build_optimizer(model: nn.Module, optim: OptimSettings, batch: int) -> torch.optim.Optimizer:
    """`optim.name` (SGD with momentum, or AdamW) from timm's `create_optimizer_v2` over `param_groups`, at the
    `effective_lrs` for a global batch of `batch` images; groups without their own lr and weight decay take
    `optim`'s."""
    lrs = effective_lrs(optim, batch)
    groups = param_groups(model, optim, lrs)
    if optim.name == "adamw":
        return create_optimizer_v2(groups, opt="adamw", lr=lrs[0], weight_decay=optim.weight_decay)
    # timm's "sgd" is Nesterov momentum and its "momentum" the classical kind
    kind = "sgd" if optim.nesterov else "momentum"
    return create_optimizer_v2(groups, opt=kind, lr=lrs[0], weight_decay=optim.weight_decay, momentum=optim.momentum)
