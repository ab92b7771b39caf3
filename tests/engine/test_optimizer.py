"""Optimiser parameter groups: the head's own learning rate and weight decay."""

import torch

from bagmar_cli.engine.optimizer import build_optimizer
from bagmar_cli.models import build_model
from bagmar_cli.models.freeze import freeze
from bagmar_cli.settings import ModelSettings, OptimSettings


def _model():
    return build_model(ModelSettings(backbone="resnet8_cifar"), 10, 3)


def test_one_group_unless_the_head_has_its_own_settings():
    model = _model()
    optimizer = build_optimizer(model, OptimSettings(lr=0.2, weight_decay=1e-4))
    assert len(optimizer.param_groups) == 1
    assert len(optimizer.param_groups[0]["params"]) == len(list(model.parameters()))


def test_the_head_gets_its_own_lr_and_weight_decay():
    model = _model()
    optimizer = build_optimizer(model, OptimSettings(lr=0.2, weight_decay=1e-4, head_lr=0.02))
    backbone, head = optimizer.param_groups
    assert (backbone["lr"], backbone["weight_decay"]) == (0.2, 1e-4)
    assert (head["lr"], head["weight_decay"]) == (0.02, 1e-4)  # None: the backbone's weight decay
    assert head["params"] == [model.head.weight, model.head.bias]
    assert len(backbone["params"]) + 2 == len(list(model.parameters()))


def test_frozen_parameters_are_not_optimised():
    model = _model()
    freeze(model, "backbone")
    optimizer = build_optimizer(model, OptimSettings(head_weight_decay=0.0))
    assert [len(g["params"]) for g in optimizer.param_groups] == [2]  # the empty backbone group is dropped
    assert optimizer.param_groups[0]["weight_decay"] == 0.0


def test_the_head_lr_follows_the_schedule():
    from bagmar_cli.engine.schedule import build_scheduler
    from bagmar_cli.settings import ScheduleSettings

    optimizer = build_optimizer(_model(), OptimSettings(lr=0.2, head_lr=0.02))
    scheduler = build_scheduler(optimizer, ScheduleSettings(warmup_epochs=0), epochs=4)
    for _ in range(2):
        optimizer.step()
        scheduler.step()
    lrs = [g["lr"] for g in optimizer.param_groups]
    assert torch.allclose(torch.tensor(lrs), torch.tensor([0.1, 0.01]))  # cosine half-way: both halved
