"""Learning-rate schedule from torch's schedulers: constant warm-up, then cosine or step decay, per epoch."""

from __future__ import annotations

from collections import Counter
from typing import Any

from torch.optim import Optimizer
from torch.optim import lr_scheduler as sched

from bagmar_cli.settings import ScheduleSettings


def build_scheduler(optimizer: Optimizer, settings: ScheduleSettings, epochs: int) -> sched.LRScheduler:
    """Stepped once per epoch. Warm-up runs at lr * warmup_factor (the authors: 0.05, then 0.1)."""
    warmup = min(settings.warmup_epochs, epochs - 1)
    decay_epochs = max(epochs - warmup, 1)
    main: sched.LRScheduler
    if settings.name == "cosine":
        main = sched.CosineAnnealingLR(optimizer, T_max=decay_epochs, eta_min=settings.min_lr)
    elif settings.name == "step":
        milestones = [m - warmup for m in settings.milestones if m > warmup]
        main = sched.MultiStepLR(optimizer, milestones=milestones, gamma=settings.gamma)
    else:
        main = sched.ConstantLR(optimizer, factor=1.0, total_iters=0)
    if warmup == 0:
        return main
    ramp = sched.ConstantLR(optimizer, factor=settings.warmup_factor, total_iters=warmup)
    return sched.SequentialLR(optimizer, [ramp, main], milestones=[warmup])


def load_scheduler_state(scheduler: sched.LRScheduler, state: dict[str, Any]) -> None:
    """Load a state dict that went through JSON (checkpoint metadata), which turned the epochs of
    MultiStepLR's `milestones` Counter into strings: left so, no milestone would ever match again."""
    scheduler.load_state_dict(_int_milestones(state))


def _int_milestones(value: Any) -> Any:
    if isinstance(value, list):
        return [_int_milestones(item) for item in value]
    if not isinstance(value, dict):
        return value
    return {
        key: Counter({int(epoch): n for epoch, n in item.items()})
        if key == "milestones" and isinstance(item, dict)
        else _int_milestones(item)
        for key, item in value.items()
    }
