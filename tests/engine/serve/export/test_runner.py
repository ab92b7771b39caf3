"""engine/serve/export/runner.py: runners over a torch module, and fixed-batch padding."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from bagmar_cli.engine.serve.export.runner import padded, torch_runner


def test_padded_feeds_full_batches_and_returns_only_real_rows() -> None:
    seen: list[int] = []

    def run(images: Tensor) -> Tensor:
        seen.append(len(images))
        return images.flatten(1)[:, :2] * 2

    images = torch.randn(7, 1, 2, 2)
    out = padded(run, 3)(images)
    assert seen == [3, 3, 3]  # 7 images: two full batches and one padded from 1 to 3
    assert out.shape == (7, 2)
    assert torch.equal(out, images.flatten(1)[:, :2] * 2)


def test_padded_of_an_exact_multiple_adds_no_padding() -> None:
    seen: list[int] = []

    def run(images: Tensor) -> Tensor:
        seen.append(len(images))
        return images.sum(dim=1, keepdim=True)

    out = padded(run, 2)(torch.ones(4, 3))
    assert seen == [2, 2]
    assert torch.equal(out, torch.full((4, 1), 3.0))


def test_torch_runner_returns_float32_cpu_without_gradients() -> None:
    torch.manual_seed(0)
    net = nn.Linear(5, 3).double()
    images = torch.randn(4, 5, dtype=torch.float64)
    out = torch_runner(net, torch.device("cpu"))(images)
    assert out.dtype == torch.float32 and out.device.type == "cpu"
    assert not out.requires_grad
    assert torch.allclose(out, net(images).detach().float())
