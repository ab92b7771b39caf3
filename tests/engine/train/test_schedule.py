"""The learning-rate schedule, stepped per optimiser step: warm-up at lr * warmup_factor for warmup_epochs' steps,
then cosine to min_lr at the last step, or step decay at epoch milestones."""

import itertools
import json
import math

import pytest
import torch

from bagmar_cli.engine.train.schedule import build_scheduler, load_scheduler_state, scheduler_state
from bagmar_cli.errors import CheckpointError
from bagmar_cli.settings import ScheduleSettings


def lrs(settings: ScheduleSettings, epochs: int, per_epoch: int, lr: float = 0.1) -> list[float]:
    """The lr of every optimiser step of the run."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    scheduler = build_scheduler(optimizer, settings, epochs, per_epoch)
    seen = []
    for _ in range(epochs * per_epoch):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return seen


def cosine(peak: float, floor: float, n: int) -> list[float]:
    return [floor + (peak - floor) * (1 + math.cos(math.pi * t / (n - 1))) / 2 for t in range(n)]


def test_one_warm_up_epoch_is_its_steps_then_cosine_per_step_to_min_lr():
    """3 epochs of 4 steps: 4 steps at 0.05, then 8 cosine steps from 0.1 down to min_lr at the very last step."""
    seen = lrs(ScheduleSettings(name="cosine", warmup_epochs=1, warmup_factor=0.5, min_lr=0.001), 3, 4)
    assert seen == pytest.approx([0.05] * 4 + cosine(0.1, 0.001, 8))
    assert seen[-1] == pytest.approx(0.001)


def test_a_one_epoch_run_warms_up_and_decays():
    """epochs = 1 used to skip the warm-up; per step, the warm-up takes at most half the run, then the decay."""
    seen = lrs(ScheduleSettings(name="cosine", warmup_epochs=1, warmup_factor=0.5), 1, 6)
    assert seen == pytest.approx([0.05] * 3 + cosine(0.1, 0.0, 3))


def test_a_two_epoch_run_does_not_spend_its_last_epoch_at_the_peak():
    seen = lrs(ScheduleSettings(name="cosine", warmup_epochs=1), 2, 5)
    assert seen[5] == pytest.approx(0.1) and seen[-1] == pytest.approx(0.0)
    assert all(later < earlier for earlier, later in itertools.pairwise(seen[5:]))


def test_step_decay_counts_milestones_in_training_epochs():
    seen = lrs(ScheduleSettings(name="step", warmup_epochs=1, milestones=[3], gamma=0.1), 5, 2)
    assert seen == pytest.approx([0.05, 0.05, 0.1, 0.1, 0.1, 0.1, 0.01, 0.01, 0.01, 0.01])


def test_constant_after_warm_up():
    assert lrs(ScheduleSettings(name="constant", warmup_epochs=0), 2, 3) == pytest.approx([0.1] * 6)


def test_the_state_survives_json_and_the_resumed_schedule_continues_the_sequence():
    settings = ScheduleSettings(name="cosine", warmup_epochs=1, min_lr=0.01)
    whole = lrs(settings, 3, 4)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    scheduler = build_scheduler(optimizer, settings, 3, 4)
    for _ in range(5):
        optimizer.step()
        scheduler.step()
    state = json.loads(json.dumps(scheduler_state(scheduler)))
    resumed_optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    resumed = build_scheduler(resumed_optimizer, settings, 3, 4)
    load_scheduler_state(resumed, state)
    resumed_optimizer.param_groups[0]["lr"] = optimizer.param_groups[0]["lr"]  # as the optimiser's state restores
    rest = []
    for _ in range(7):
        rest.append(resumed_optimizer.param_groups[0]["lr"])
        resumed_optimizer.step()
        resumed.step()
    assert rest == pytest.approx(whole[5:])


def test_a_per_epoch_state_of_an_earlier_bagmar_is_refused_by_name():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    scheduler = build_scheduler(optimizer, ScheduleSettings(), 2, 2)
    old = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=2).state_dict()
    with pytest.raises(CheckpointError, match="stepped once per epoch"):
        load_scheduler_state(scheduler, old)


def test_the_schedule_peaks_at_the_scaled_lr_and_decays_to_the_stated_min_lr():
    """lr 0.2 stated for 512 images, linearly scaled to 0.05 for 128: warm-up at 0.05 * 0.5, the cosine from 0.05
    (the head's from 0.005), and both end at schedule.min_lr as stated (a floor is not scaled)."""
    from bagmar_cli.engine.train.optimizer import build_optimizer
    from bagmar_cli.models import build_model
    from bagmar_cli.settings import ModelSettings, OptimSettings

    model = build_model(ModelSettings(backbone="resnet8_cifar"), 10, 3)
    optim = OptimSettings(lr=0.2, head_lr=0.02, lr_batch=512, lr_scaling="linear")
    optimizer = build_optimizer(model, optim, 128)
    settings = ScheduleSettings(name="cosine", warmup_epochs=1, warmup_factor=0.5, min_lr=0.001)
    scheduler = build_scheduler(optimizer, settings, 5, 1)
    seen = []
    for _ in range(5):
        seen.append([group["lr"] for group in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    decay = [[a, b] for a, b in zip(cosine(0.05, 0.001, 4), cosine(0.005, 0.001, 4), strict=True)]
    assert seen == [pytest.approx(lrs) for lrs in [[0.025, 0.0025], *decay]]
    assert seen[-1] == pytest.approx([0.001, 0.001])
