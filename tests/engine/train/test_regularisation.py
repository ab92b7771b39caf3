"""Optimisers and regularisation through timm: AdamW and SGD, layer-wise lr decay, gradient clipping, label
smoothing and mixup/cutmix, each with every registered loss."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bagmar_cli.engine.train.optimizer import build_optimizer
from bagmar_cli.engine.train.step import TrainStep, build_mixup, mix_batch
from bagmar_cli.losses import build_loss, loss_names
from bagmar_cli.models import build_model
from bagmar_cli.settings import LossSettings, ModelSettings, OptimSettings, TrainSettings

COUNTS = [60, 30, 12, 6, 3]


def test_optim_name_picks_timms_adamw_or_sgd():
    model = build_model(ModelSettings(backbone="resnet8_cifar"), 5, 3)
    adamw = build_optimizer(model, OptimSettings(name="adamw", lr=1e-3, weight_decay=0.05), 64)
    assert isinstance(adamw, torch.optim.AdamW) and adamw.defaults["lr"] == 1e-3
    assert adamw.defaults["weight_decay"] == 0.05
    sgd = build_optimizer(model, OptimSettings(nesterov=True), 64)
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["nesterov"] and sgd.defaults["momentum"] == 0.9
    assert not build_optimizer(model, OptimSettings(), 64).defaults["nesterov"]


def test_layer_decay_gives_a_transformer_lower_lrs_down_its_blocks():
    """timm's test_vit: stem and blocks under lr * decay^(L - k), the last layer and the head at lr."""
    model = build_model(ModelSettings(backbone="test_vit"), 5, 3)
    optimizer = build_optimizer(model, OptimSettings(name="adamw", lr=1e-3, layer_decay=0.5), 64)
    lrs = sorted({group["lr"] for group in optimizer.param_groups})
    assert lrs[-1] == pytest.approx(1e-3)
    assert [b / a for a, b in itertools.pairwise(lrs)] == pytest.approx([2.0] * (len(lrs) - 1))
    assert len(lrs) >= 3
    head = {id(p) for p in model.head.parameters()}
    (head_group,) = [g for g in optimizer.param_groups if {id(p) for p in g["params"]} == head]
    assert head_group["lr"] == pytest.approx(1e-3)
    trained = sum(len(g["params"]) for g in optimizer.param_groups)
    assert trained == len(list(model.parameters()))


def test_gradient_clipping_bounds_the_step():
    """Plain SGD (no momentum, no decay): the update is lr times the gradient, clipped to norm 0.01."""
    torch.manual_seed(0)
    net = nn.Linear(6, 4)
    before = [p.detach().clone() for p in net.parameters()]
    optimizer = torch.optim.SGD(net.parameters(), lr=1.0)
    step = TrainStep(net, nn.CrossEntropyLoss(), optimizer, TrainSettings(), torch.device("cpu"), clip_grad=0.01)
    step(torch.randn(8, 6) * 100, torch.randint(0, 4, (8,)))
    moved = torch.cat([(p.detach() - b).flatten() for p, b in zip(net.parameters(), before, strict=True)])
    assert moved.norm().item() == pytest.approx(0.01, rel=1e-4)


def test_label_smoothing_of_cross_entropy_is_torchs():
    torch.manual_seed(0)
    logits, labels = torch.randn(16, 5), torch.randint(0, 5, (16,))
    loss = build_loss(LossSettings(name="ce", label_smoothing=0.1), COUNTS)
    assert loss(logits, labels).item() == pytest.approx(F.cross_entropy(logits, labels, label_smoothing=0.1).item())
    loss.eval()  # evaluation reports the unsmoothed loss
    assert loss(logits, labels).item() == pytest.approx(F.cross_entropy(logits, labels).item())


@pytest.mark.parametrize("name", loss_names())
def test_every_loss_takes_label_smoothing(name):
    torch.manual_seed(0)
    logits, labels = torch.randn(16, 5, requires_grad=True), torch.randint(0, 5, (16,))
    plain = build_loss(LossSettings(name=name), COUNTS)(logits, labels)
    smoothed = build_loss(LossSettings(name=name, label_smoothing=0.2), COUNTS)(logits, labels)
    assert torch.isfinite(smoothed) and smoothed.item() != pytest.approx(plain.item())
    smoothed.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("name", loss_names())
def test_every_loss_takes_mixed_pairs(name):
    """lam = 1 is the loss of the own labels; lam = 0.3 weighs the two label sets 0.3 : 0.7."""
    torch.manual_seed(0)
    logits, labels = torch.randn(8, 5), torch.randint(0, 5, (8,))
    partners = labels.flip(0)

    def fresh() -> nn.Module:
        return build_loss(LossSettings(name=name), COUNTS)

    assert fresh().mixed(logits, labels, partners, torch.tensor(1.0)).item() == pytest.approx(
        fresh()(logits, labels).item()
    )
    mixed = fresh().mixed(logits, labels, partners, torch.tensor(0.3))
    expected = 0.3 * fresh()(logits, labels) + 0.7 * fresh()(logits, partners)
    assert mixed.item() == pytest.approx(expected.item())


def test_bagmars_statistics_see_each_mixed_image_once_under_its_own_label():
    torch.manual_seed(0)
    logits, labels = torch.randn(8, 5), torch.tensor([0, 0, 1, 2, 3, 4, 4, 4])
    mixed, plain = (build_loss(LossSettings(name="bagmar"), COUNTS) for _ in range(2))
    mixed.mixed(logits, labels, labels.flip(0), torch.tensor(0.6))
    plain(logits, labels)
    assert torch.equal(mixed.theta, plain.theta) and torch.equal(mixed.phi, plain.phi)
    assert mixed.theta.sum() > 0


def test_mix_batch_reads_lam_and_the_partners_from_timms_mixup():
    import numpy as np

    np.random.seed(0)
    mixup = build_mixup(TrainSettings(mixup_alpha=0.4), 5)
    assert mixup is not None and build_mixup(TrainSettings(), 5) is None
    images, labels = torch.rand(6, 3, 4, 4), torch.tensor([0, 1, 2, 3, 4, 0])
    mixed, (own, partners, lam) = mix_batch(mixup, images.clone(), labels)
    assert torch.equal(own, labels) and torch.equal(partners, labels.flip(0))
    assert torch.allclose(mixed, lam * images + (1 - lam) * images.flip(0), atol=1e-6)


@pytest.mark.parametrize("name", loss_names())
def test_every_loss_trains_with_adamw_mixup_cutmix_smoothing_and_clipping(name):
    torch.manual_seed(0)
    model = build_model(ModelSettings(backbone="resnet8_cifar", head="normed" if name == "ldam" else "linear"), 5, 3)
    optimizer = build_optimizer(model, OptimSettings(name="adamw", lr=1e-3, clip_grad=1.0), 8)
    settings = TrainSettings(mixup_alpha=0.8, cutmix_alpha=1.0)
    loss_fn = build_loss(LossSettings(name=name, label_smoothing=0.1), COUNTS)
    step = TrainStep(
        model, loss_fn, optimizer, settings, torch.device("cpu"), mixup=build_mixup(settings, 5), clip_grad=1.0
    )
    before = model.head.weight.detach().clone()
    losses = [step(torch.rand(8, 3, 16, 16), torch.randint(0, 5, (8,))) for _ in range(2)]
    assert all(torch.isfinite(loss) for loss in losses)
    assert not torch.equal(model.head.weight, before)


def test_train_with_every_regulariser_records_them_and_finishes(cli, digits_data: Path, tmp_path: Path):
    sets = [
        "model.backbone=resnet8_cifar", "optim.name=adamw", "optim.lr=0.003", "optim.weight_decay=0.05",
        "optim.clip_grad=2.0", "loss.label_smoothing=0.1", "train.mixup_alpha=0.8", "train.cutmix_alpha=1.0",
    ]  # fmt: skip
    run = tmp_path / "run"
    outcome = cli(
        "train", "--data", digits_data, "--out", run, "--epochs", "1", "--device", "cpu",
        *(arg for item in sets for arg in ("--set", item)),
    )  # fmt: skip
    assert outcome.code == 0, outcome.err
    (record,) = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert record["loss"] > 0 and record["val"]["top1"] is not None
    config = (run / "config.toml").read_text()
    assert 'name = "adamw"' in config and "mixup_alpha = 0.8" in config and "label_smoothing = 0.1" in config
