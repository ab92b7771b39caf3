"""Optimiser parameter groups (the head's own learning rate and weight decay) and the lr scaling rule for the
global batch."""

import pytest
import torch

from bagmar_cli.engine.train.optimizer import build_optimizer, effective_lrs, lr_rule_line
from bagmar_cli.models import build_model
from bagmar_cli.models.freeze import freeze, train_only
from bagmar_cli.settings import ModelSettings, OptimSettings


def _model():
    return build_model(ModelSettings(backbone="resnet8_cifar"), 10, 3)


def test_one_group_unless_the_head_has_its_own_settings():
    model = _model()
    optimizer = build_optimizer(model, OptimSettings(lr=0.2, weight_decay=1e-4), 64)
    assert len(optimizer.param_groups) == 1
    assert len(optimizer.param_groups[0]["params"]) == len(list(model.parameters()))


def test_the_head_gets_its_own_lr_and_weight_decay():
    model = _model()
    optimizer = build_optimizer(model, OptimSettings(lr=0.2, weight_decay=1e-4, head_lr=0.02), 64)
    backbone, head = optimizer.param_groups
    assert (backbone["lr"], backbone["weight_decay"]) == (0.2, 1e-4)
    assert (head["lr"], head["weight_decay"]) == (0.02, 1e-4)  # None: the backbone's weight decay
    assert head["params"] == [model.head.weight, model.head.bias]
    assert len(backbone["params"]) + 2 == len(list(model.parameters()))


def test_frozen_parameters_are_not_optimised():
    model = _model()
    freeze(model, "backbone")
    optimizer = build_optimizer(model, OptimSettings(head_weight_decay=0.0), 64)
    assert [len(g["params"]) for g in optimizer.param_groups] == [2]  # the empty backbone group is dropped
    assert optimizer.param_groups[0]["weight_decay"] == 0.0


def test_the_head_lr_follows_the_schedule():
    from bagmar_cli.engine.train.schedule import build_scheduler
    from bagmar_cli.settings import ScheduleSettings

    optimizer = build_optimizer(_model(), OptimSettings(lr=0.2, head_lr=0.02), 64)
    scheduler = build_scheduler(optimizer, ScheduleSettings(warmup_epochs=0), epochs=1, steps_per_epoch=5)
    for _ in range(2):
        optimizer.step()
        scheduler.step()
    lrs = [g["lr"] for g in optimizer.param_groups]
    assert torch.allclose(torch.tensor(lrs), torch.tensor([0.1, 0.01]))  # cosine half-way: both halved


def test_linear_scaling_by_hand():
    """lr 0.2 stated for 512 images, a run of 128: 0.2 * 128 / 512 = 0.05, and the head's 0.02 -> 0.005."""
    optim = OptimSettings(lr=0.2, head_lr=0.02, lr_batch=512, lr_scaling="linear")
    assert effective_lrs(optim, 128) == pytest.approx((0.05, 0.005))
    assert effective_lrs(optim, 1024) == pytest.approx((0.4, 0.04))
    assert effective_lrs(optim.model_copy(update={"head_lr": None}), 128) == pytest.approx((0.05, None))


@pytest.mark.parametrize(
    "optim",
    [
        OptimSettings(lr=0.2, head_lr=0.02, lr_batch=512, lr_scaling="keep"),
        OptimSettings(lr=0.2, head_lr=0.02, lr_scaling="linear"),  # no lr_batch: stated for the run's own batch
        OptimSettings(lr=0.2, head_lr=0.02, lr_batch=128, lr_scaling="linear"),
    ],
    ids=["keep", "no-lr-batch", "same-batch"],
)
def test_the_stated_lrs_are_left_alone(optim):
    assert effective_lrs(optim, 128) == (0.2, 0.02)
    optimizer = build_optimizer(_model(), optim, 128)
    assert [g["lr"] for g in optimizer.param_groups] == [0.2, 0.02]


def test_the_optimiser_starts_from_the_scaled_lrs():
    optim = OptimSettings(lr=0.2, head_lr=0.02, lr_batch=512, lr_scaling="linear")
    backbone, head = build_optimizer(_model(), optim, 128).param_groups
    assert (backbone["lr"], head["lr"]) == pytest.approx((0.05, 0.005))
    (single,) = build_optimizer(_model(), optim.model_copy(update={"head_lr": None}), 128).param_groups
    assert single["lr"] == pytest.approx(0.05)


def test_the_rule_line_when_keeping():
    optim = OptimSettings(lr=0.2, lr_batch=512)
    assert lr_rule_line(optim, 128, 2) == (
        "optim.lr 0.2 is stated for a global batch of 512; this run's is 128 (2 processes x 64): "
        'keeping it (optim.lr_scaling = "keep"; "linear" would give 0.05)'
    )


def test_the_rule_line_when_scaling_linearly():
    optim = OptimSettings(lr=0.2, head_lr=0.02, lr_batch=512, lr_scaling="linear")
    assert lr_rule_line(optim, 128, 1) == (
        "optim.lr 0.2 and optim.head_lr 0.02 are stated for a global batch of 512; this run's is 128: "
        'scaled linearly to 0.05 and 0.005 (optim.lr_scaling = "linear")'
    )


@pytest.mark.parametrize(("lr_batch", "processes"), [(None, 1), (None, 4), (128, 1), (128, 4)])
def test_no_rule_line_when_the_lr_is_stated_for_the_run_s_batch(lr_batch, processes):
    """No lr_batch (the lr is the run's own) or the same batch: nothing to say, however many processes."""
    assert lr_rule_line(OptimSettings(lr=0.2, lr_batch=lr_batch, lr_scaling="linear"), 128, processes) is None


@pytest.mark.parametrize("peft", ["lora", "adaptformer"])
@pytest.mark.parametrize("optim", [OptimSettings(), OptimSettings(head_lr=0.5), OptimSettings(layer_decay=0.7)])
def test_under_peft_the_optimiser_holds_exactly_the_adapters_and_the_head(peft, optim):
    settings = ModelSettings(backbone="test_vit", peft=peft, peft_rank=4, head="normed")
    model = build_model(settings, 3, 3)
    train_only(model, settings)
    held = {id(p) for group in build_optimizer(model, optim, 64).param_groups for p in group["params"]}
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert held == trainable and len(trainable) < len(list(model.parameters()))
