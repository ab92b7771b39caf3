"""One optimiser step of the recipe, with the speed settings (bf16 autocast, channels-last, compile, EMA) applied.

The step never waits for the device: it returns the loss as a device tensor, and the caller reads a window of them
at once (`first_non_finite` names the step where a bad loss first appeared). `torch.compile` wraps the model's
forward only: the BaGMar loss updates its class statistics in place and the SGD step is a Python loop over
parameter groups, so compiling the whole step would trade graph breaks for little (on a GPU the model is where the
kernels are; see README, `bagmar train`).
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any, TypeVar, cast

import torch
from timm.utils.model_ema import ModelEmaV3
from torch import Tensor, nn
from torch.optim.lr_scheduler import LRScheduler

from bagmar_cli.settings import TrainSettings

M = TypeVar("M", bound=nn.Module)


class TrainStep:
    """forward (autocast) -> loss in fp32 -> backward -> optimiser -> schedule -> EMA; returns the detached loss
    on the device."""

    def __init__(
        self,
        net: nn.Module,
        loss_fn: nn.Module,
        optimizer: torch.optim.Optimizer,
        settings: TrainSettings,
        device: torch.device,
        *,
        scheduler: LRScheduler | None = None,
        ema: ModelEmaV3 | None = None,
        ema_source: nn.Module | None = None,
    ) -> None:
        """`net` the module to run (DDP-wrapped or not); `scheduler` steps after every optimiser step;
        `ema_source` the plain model the EMA follows."""
        self.loss_fn, self.optimizer, self.ema, self.ema_source = loss_fn, optimizer, ema, ema_source
        self.scheduler = scheduler
        self.lr = float(optimizer.param_groups[0]["lr"])  # the first group's lr of the latest step
        self.channels_last = settings.channels_last
        # torch types compile as returning a Callable; of a Module it returns an OptimizedModule (a Module)
        self.net = cast(nn.Module, torch.compile(net)) if settings.compile else net
        self.autocast: Any = (
            torch.autocast(device.type, dtype=torch.bfloat16) if settings.precision == "bf16" else nullcontext()
        )

    def __call__(self, images: Tensor, labels: Tensor) -> Tensor:
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with self.autocast:
            logits = self.net(images)
        loss = self.loss_fn(logits.float(), labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.lr = float(self.optimizer.param_groups[0]["lr"])
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.ema_source)
        detached: Tensor = loss.detach()
        return detached


def prepare_model(model: M, settings: TrainSettings) -> M:
    """The model in the memory format the settings ask for (before DDP wraps it and the optimiser takes it)."""
    return model.to(memory_format=torch.channels_last) if settings.channels_last else model


def build_ema(model: nn.Module, settings: TrainSettings) -> ModelEmaV3 | None:
    """timm's ModelEmaV3 of `model` when `train.ema` is on (a copy that follows every optimiser step)."""
    return ModelEmaV3(model, decay=settings.ema_decay) if settings.ema else None


def first_non_finite(losses: Tensor) -> int | None:
    """Index of the first non-finite value of a 1-D loss window (one host read), or None when all are finite."""
    bad = torch.nonzero(~torch.isfinite(losses)).flatten()
    return int(bad[0]) if len(bad) else None
