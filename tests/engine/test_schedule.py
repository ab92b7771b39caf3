"""The learning-rate schedule: warm-up at lr * warmup_factor, then cosine or step decay, stepped per epoch."""

import json
import math

import pytest
import torch

from bagmar_cli.engine.schedule import build_scheduler, load_scheduler_state
from bagmar_cli.settings import ScheduleSettings


def lrs(settings: ScheduleSettings, epochs: int, lr: float = 0.1) -> list[float]:
    """The lr in force during each epoch."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    scheduler = build_scheduler(optimizer, settings, epochs)
    seen = []
    for _ in range(epochs):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return seen


def test_cosine_after_one_warm_up_epoch_by_hand():
    seen = lrs(ScheduleSettings(name="cosine", warmup_epochs=1, warmup_factor=0.5), 5)
    cosine = [0.1 * (1 + math.cos(math.pi * t / 4)) / 2 for t in range(4)]
    assert seen == pytest.approx([0.05, *cosine])


def test_step_decay_counts_milestones_in_training_epochs():
    seen = lrs(ScheduleSettings(name="step", warmup_epochs=1, milestones=[3], gamma=0.1), 5)
    assert seen == pytest.approx([0.05, 0.1, 0.1, 0.01, 0.01])


def test_warm_up_never_takes_every_epoch():
    """A 1-epoch run with 5 warm-up epochs still trains at the full lr (warm-up is capped at epochs - 1)."""
    assert lrs(ScheduleSettings(name="constant", warmup_epochs=5), 1) == pytest.approx([0.1])


def test_step_state_survives_json_and_still_decays():
    """Checkpoint metadata is JSON: the milestones' int keys become strings and must be read back as ints."""
    settings = ScheduleSettings(name="step", warmup_epochs=0, milestones=[2], gamma=0.1)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    scheduler = build_scheduler(optimizer, settings, 4)
    optimizer.step()
    scheduler.step()  # one epoch done
    state = json.loads(json.dumps(scheduler.state_dict()))
    resumed_optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    resumed = build_scheduler(resumed_optimizer, settings, 4)
    load_scheduler_state(resumed, state)
    resumed_optimizer.step()
    resumed.step()  # the second epoch ends at the milestone
    assert resumed_optimizer.param_groups[0]["lr"] == pytest.approx(0.01)
