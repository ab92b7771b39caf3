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


def test_the_schedule_peaks_at_the_scaled_lr_and_decays_to_the_stated_min_lr():
    """lr 0.2 stated for 512 images, linearly scaled to 0.05 for 128: warm-up at 0.05 * 0.5, the cosine from 0.05
    (the head's from 0.005), and both end at schedule.min_lr as stated (a floor is not scaled)."""
    from bagmar_cli.engine.optimizer import build_optimizer
    from bagmar_cli.models import build_model
    from bagmar_cli.settings import ModelSettings, OptimSettings

    model = build_model(ModelSettings(backbone="resnet8_cifar"), 10, 3)
    optim = OptimSettings(lr=0.2, head_lr=0.02, lr_batch=512, lr_scaling="linear")
    optimizer = build_optimizer(model, optim, 128)
    settings = ScheduleSettings(name="cosine", warmup_epochs=1, warmup_factor=0.5, min_lr=0.001)
    scheduler = build_scheduler(optimizer, settings, 5)
    seen = []
    for _ in range(5):
        seen.append([group["lr"] for group in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    cosine = [
        [m + (peak - m) * (1 + math.cos(math.pi * t / 4)) / 2 for peak, m in ((0.05, 0.001), (0.005, 0.001))]
        for t in range(4)
    ]
    assert seen == [pytest.approx(lrs) for lrs in [[0.025, 0.0025], *cosine]]
    assert [group["lr"] for group in optimizer.param_groups] == pytest.approx([0.001, 0.001])
