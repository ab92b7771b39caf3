"""A runner: normalised float images (N, C, H, W) -> outputs (N, num_classes) on CPU, whatever runs the model."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

Runner = Callable[[Tensor], Tensor]
"""Normalised float images (N, C, H, W) -> outputs (N, num_classes), on CPU."""


def torch_runner(module: nn.Module, device: torch.device) -> Runner:
    """Run a torch module without gradients on `device`; outputs come back as float32 on CPU."""

    @torch.no_grad()
    def run(images: Tensor) -> Tensor:
        outputs: Tensor = module(images.to(device))
        return outputs.float().cpu()

    return run


def padded(run: Runner, batch: int) -> Runner:
    """Feed `run` chunks of exactly `batch` images, zero-padding the last, and drop the padding's outputs."""

    def run_padded(images: Tensor) -> Tensor:
        outputs = []
        for chunk in torch.split(images, batch):
            pad = batch - len(chunk)
            full = torch.cat([chunk, chunk.new_zeros(pad, *chunk.shape[1:])]) if pad else chunk
            outputs.append(run(full)[: len(chunk)])
        return torch.cat(outputs)

    return run_padded
