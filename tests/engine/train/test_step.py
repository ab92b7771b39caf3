"""engine/step.py: one optimiser step, and naming the first non-finite loss of a window."""

from __future__ import annotations

import torch
from torch import nn

from bagmar_cli.engine.train.step import TrainStep, build_ema, first_non_finite, prepare_model
from bagmar_cli.settings import TrainSettings


def _settings(**update: object) -> TrainSettings:
    return TrainSettings().model_copy(update={"compile": False, "precision": "fp32", "channels_last": False} | update)


def test_first_non_finite_names_the_first_bad_step() -> None:
    assert first_non_finite(torch.tensor([1.0, 0.5, float("nan"), float("inf")])) == 2
    assert first_non_finite(torch.tensor([float("-inf"), 1.0])) == 0


def test_first_non_finite_is_none_when_all_finite() -> None:
    assert first_non_finite(torch.tensor([3.0, 2.0, 1.0])) is None
    assert first_non_finite(torch.tensor([])) is None


def test_step_returns_the_detached_loss_and_moves_the_weights() -> None:
    torch.manual_seed(0)
    net = nn.Linear(4, 3)
    before = net.weight.detach().clone()
    images, labels = torch.randn(8, 4), torch.randint(0, 3, (8,))
    expected = float(nn.functional.cross_entropy(net(images), labels).detach())
    step = TrainStep(
        net, nn.CrossEntropyLoss(), torch.optim.SGD(net.parameters(), lr=0.1), _settings(), torch.device("cpu")
    )
    loss = step(images, labels)
    assert not loss.requires_grad
    assert float(loss) == torch.tensor(expected).item()
    assert not torch.equal(net.weight, before)


def test_ema_follows_only_when_enabled() -> None:
    net = nn.Linear(4, 3)
    assert build_ema(net, _settings(ema=False)) is None
    ema = build_ema(net, _settings(ema=True, ema_decay=0.5))
    assert ema is not None
    step = TrainStep(
        net,
        nn.CrossEntropyLoss(),
        torch.optim.SGD(net.parameters(), lr=1.0),
        _settings(),
        torch.device("cpu"),
        ema=ema,
        ema_source=net,
    )
    start = ema.module.weight.detach().clone()
    step(torch.randn(8, 4), torch.randint(0, 3, (8,)))
    assert not torch.equal(ema.module.weight, start)  # the copy moved...
    assert not torch.equal(ema.module.weight, net.weight)  # ...part of the way (decay 0.5), not onto the model


def test_prepare_model_uses_channels_last_only_when_asked() -> None:
    conv = nn.Conv2d(3, 4, 3)
    assert prepare_model(conv, _settings(channels_last=True)).weight.is_contiguous(memory_format=torch.channels_last)
    plain = prepare_model(nn.Conv2d(3, 4, 3), _settings())
    assert not plain.weight.is_contiguous(memory_format=torch.channels_last)
