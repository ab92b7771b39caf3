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
from timm.data.mixup import Mixup
from timm.utils.clip_grad import dispatch_clip_grad
from timm.utils.model_ema import ModelEmaV3
from torch import Tensor, nn
from torch.optim.lr_scheduler import LRScheduler

from bagmar_cli.losses import ClassWeightedLoss
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
        mixup: Mixup | None = None,
        clip_grad: float | None = None,
    ) -> None:
        """`net` the module to run (DDP-wrapped or not); `scheduler` steps after every optimiser step;
        `ema_source` the plain model the EMA follows; `mixup` mixes each even-sized batch (timm's Mixup);
        `clip_grad` the largest L2 norm of all gradients together (timm's dispatch_clip_grad)."""
        self.loss_fn, self.optimizer, self.ema, self.ema_source = loss_fn, optimizer, ema, ema_source
        self.scheduler, self.mixup, self.clip_grad = scheduler, mixup, clip_grad
        self.params = [p for group in optimizer.param_groups for p in group["params"]]
        self.lr = float(optimizer.param_groups[0]["lr"])  # the first group's lr of the latest step
        self.channels_last = settings.channels_last
        # torch types compile as returning a Callable; of a Module it returns an OptimizedModule (a Module)
        self.net = cast(nn.Module, torch.compile(net)) if settings.compile else net
        self.autocast: Any = (
            torch.autocast(device.type, dtype=torch.bfloat16) if settings.precision == "bf16" else nullcontext()
        )

    def __call__(self, images: Tensor, labels: Tensor) -> Tensor:
        pair = None
        if self.mixup is not None and len(labels) % 2 == 0:  # timm mixes image i with image n - 1 - i
            images, pair = mix_batch(self.mixup, images, labels)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with self.autocast:
            logits = self.net(images)
        loss = self.loss_fn(logits.float(), labels) if pair is None else mixed_loss(self.loss_fn, logits.float(), *pair)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.clip_grad is not None:
            dispatch_clip_grad(self.params, self.clip_grad)
        self.lr = float(self.optimizer.param_groups[0]["lr"])
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.ema_source)
        detached: Tensor = loss.detach()
        return detached


def build_mixup(settings: TrainSettings, num_classes: int) -> Mixup | None:
    """timm's Mixup (and CutMix) from `train.mixup_alpha` and `train.cutmix_alpha`; None when both are 0.
    Label smoothing stays the loss's (loss.label_smoothing), so Mixup's own is off."""
    if settings.mixup_alpha == 0 and settings.cutmix_alpha == 0:
        return None
    return Mixup(  # type: ignore[no-untyped-call]
        mixup_alpha=settings.mixup_alpha,
        cutmix_alpha=settings.cutmix_alpha,
        label_smoothing=0.0,
        num_classes=num_classes,
    )


def mix_batch(mixup: Mixup, images: Tensor, labels: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor, Tensor]]:
    """The mixed images and (labels, partners, lam): image i is lam of itself and 1 - lam of image n - 1 - i.
    lam is read from timm's soft target (its weight on an image's own label), on the device, without a sync."""
    mixed, soft = mixup(images, labels)
    lam = soft.gather(1, labels.unsqueeze(1)).min()  # 1 where a pair shares its label, lam elsewhere
    return mixed, (labels, labels.flip(0), lam)


def mixed_loss(loss_fn: nn.Module, logits: Tensor, labels: Tensor, partners: Tensor, lam: Tensor) -> Tensor:
    """lam * loss(labels) + (1 - lam) * loss(partners): a bagmar loss's own `mixed` (its statistics see each image
    once, under its own label), else the two terms."""
    if isinstance(loss_fn, ClassWeightedLoss):
        return loss_fn.mixed(logits, labels, partners, lam)
    loss: Tensor = lam * loss_fn(logits, labels) + (1 - lam) * loss_fn(logits, partners)
    return loss


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
