"""Learning-rate schedule, stepped after every optimiser step: constant warm-up, then cosine, step or no decay.

`lr_at` is the whole schedule as a pure function of the step (nanoGPT's `get_lr`); `build_scheduler` hands it to
torch's LambdaLR, so the optimiser's groups (the head's own lr too) follow it and a checkpoint records the step.
Settings state the warm-up and the step milestones in epochs; they are converted to steps here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from torch.optim import Optimizer
from torch.optim import lr_scheduler as sched

from bagmar_cli.errors import CheckpointError
from bagmar_cli.settings import ScheduleSettings

PER_STEP = "per_step"  # the key that marks a checkpoint's schedule state as this module's (steps, not epochs)


@dataclass(frozen=True)
class StepPlan:
    """The run's length in optimiser steps, and the warm-up's."""

    total: int  # epochs * steps per epoch
    warmup: int  # warmup_epochs in steps, at most half the run (so a short run still decays)
    per_epoch: int  # steps in one epoch (milestones are stated in epochs)


def plan_steps(settings: ScheduleSettings, epochs: int, steps_per_epoch: int) -> StepPlan:
    """The step counts of a run of `epochs` epochs of `steps_per_epoch` optimiser steps."""
    total = epochs * max(steps_per_epoch, 1)
    return StepPlan(total, min(settings.warmup_epochs * max(steps_per_epoch, 1), total // 2), max(steps_per_epoch, 1))


def lr_at(step: int, peak: float, settings: ScheduleSettings, plan: StepPlan) -> float:
    """The lr of optimiser step `step` (0-based) for a group whose peak is `peak`: peak * warmup_factor during the
    warm-up; then cosine from the peak at its first step to min_lr at the run's last step, or peak * gamma per
    milestone passed ("step"), or the peak ("constant")."""
    if step < plan.warmup:
        return peak * settings.warmup_factor
    if settings.name == "constant":
        return peak
    if settings.name == "step":
        passed = sum(step >= milestone * plan.per_epoch for milestone in settings.milestones)
        return peak * settings.gamma**passed
    decay = plan.total - plan.warmup
    progress = min(step - plan.warmup, decay - 1) / max(decay - 1, 1)
    return settings.min_lr + (peak - settings.min_lr) * (1 + math.cos(math.pi * progress)) / 2


def build_scheduler(
    optimizer: Optimizer, settings: ScheduleSettings, epochs: int, steps_per_epoch: int
) -> sched.LambdaLR:
    """A LambdaLR following `lr_at` for each of the optimiser's groups from its own peak; step it after every
    optimiser step. The groups' lrs are set to step 0's at once."""
    plan = plan_steps(settings, epochs, steps_per_epoch)

    def follow(peak: float) -> Any:
        return lambda step: lr_at(step, peak, settings, plan) / peak

    return sched.LambdaLR(optimizer, [follow(group["lr"]) for group in optimizer.param_groups])


def scheduler_state(scheduler: sched.LRScheduler) -> dict[str, Any]:
    """The schedule's state for checkpoint metadata (JSON): torch's, marked as counting optimiser steps."""
    return {**scheduler.state_dict(), PER_STEP: True}


def load_scheduler_state(scheduler: sched.LRScheduler, state: dict[str, Any]) -> None:
    """Put a schedule back at the step a checkpoint recorded; CheckpointError for the state an earlier bagmar
    recorded, whose schedule stepped once per epoch (that run cannot be continued exactly)."""
    if not state.get(PER_STEP):
        raise CheckpointError(
            "the checkpoint's learning-rate schedule stepped once per epoch (an earlier bagmar); this bagmar steps "
            "it per optimiser step, so the run cannot be continued exactly: start a new run"
        )
    scheduler.load_state_dict({key: value for key, value in state.items() if key != PER_STEP})
