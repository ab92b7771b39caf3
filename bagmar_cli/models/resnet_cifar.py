"""CIFAR ResNets (He et al. 2016, sec. 4.2) with option-A shortcuts, registered in timm's registry.

ResNet-32 (16/32/64 channels, 5 blocks per stage, 0.46 M parameters) is the standard backbone of the
long-tailed CIFAR literature (LDAM, BalancedMetaSoftmax, BaGMar). Importing this module registers
`resnet8_cifar`, `resnet8_s2_cifar`, `resnet20_cifar`, `resnet32_cifar`, `resnet44_cifar` and
`resnet56_cifar` with timm.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from timm.models import register_model
from torch import nn


class ShortcutA(nn.Module):
    """Parameter-free shortcut: subsample by the stride and zero-pad the new channels."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.pad = planes - in_planes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and a residual connection."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        needs_projection = stride != 1 or in_planes != planes
        self.shortcut = ShortcutA(in_planes, planes, stride) if needs_projection else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class CifarResNet(nn.Module):
    """A 6n+2-layer CIFAR ResNet with timm's classifier interface (num_classes=0 gives features)."""

    def __init__(self, depth: int, num_classes: int = 10, in_chans: int = 3, drop_rate: float = 0.0, **_: object):
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
        blocks, widths = (depth - 2) // 6, (16, 32, 64)
        self.stem = nn.Sequential(nn.Conv2d(in_chans, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        layers, in_planes = [], 16
        for stage, planes in enumerate(widths):
            for i in range(blocks):
                layers.append(BasicBlock(in_planes, planes, 2 if stage and i == 0 else 1))
                in_planes = planes
        self.layers = nn.Sequential(*layers)
        # timm's description of the stages (the module each one ends with); model.freeze reads it
        self.feature_info = [{"num_chs": 16, "module": "stem"}]
        self.feature_info += [{"num_chs": w, "module": f"layers.{(s + 1) * blocks - 1}"} for s, w in enumerate(widths)]
        self.num_features = in_planes
        self.drop_rate = drop_rate
        self.num_classes = num_classes
        self.fc = nn.Linear(in_planes, num_classes) if num_classes else nn.Identity()
        self.apply(_init_weights)

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        features: torch.Tensor = self.layers(self.stem(x))
        return features

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = F.dropout(x.mean((2, 3)), self.drop_rate, self.training)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _init_weights(module: nn.Module) -> None:
    # Kaiming normal for conv and linear layers, as in the LDAM / BalancedMetaSoftmax CIFAR code.
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        nn.init.kaiming_normal_(module.weight)


def _create(depth: int, pretrained: bool, **kwargs: Any) -> CifarResNet:
    if pretrained:
        raise ValueError("CIFAR ResNets have no pretrained weights; set model.pretrained = false")
    kwargs.pop("pretrained_cfg", None)
    kwargs.pop("pretrained_cfg_overlay", None)
    return CifarResNet(depth, **kwargs)


@register_model
def resnet8_cifar(pretrained: bool = False, **kwargs: object) -> CifarResNet:
    """ResNet-8, one block per stage (0.08 M parameters): the smallest 6n+2 CIFAR ResNet."""
    return _create(8, pretrained, **kwargs)


@register_model
def resnet8_s2_cifar(pretrained: bool = False, **kwargs: object) -> CifarResNet:
    """ResNet-8 with a stride-2 stem (28x28 -> 14x14 -> 7x7 -> 4x4): the same 0.08 M parameters at about a
    quarter of the compute, the CPU-sized backbone of the Fashion-MNIST-LT preset."""
    model = _create(8, pretrained, **kwargs)
    model.stem[0].stride = (2, 2)  # type: ignore[assignment]  # the stem convolution; a stride leaves its weights' shape unchanged
    return model


@register_model
def resnet20_cifar(pretrained: bool = False, **kwargs: object) -> CifarResNet:
    """ResNet-20 for 32x32 inputs (0.27 M parameters)."""
    return _create(20, pretrained, **kwargs)


@register_model
def resnet32_cifar(pretrained: bool = False, **kwargs: object) -> CifarResNet:
    """ResNet-32 for 32x32 inputs (0.46 M parameters), the long-tailed CIFAR backbone."""
    return _create(32, pretrained, **kwargs)


@register_model
def resnet44_cifar(pretrained: bool = False, **kwargs: object) -> CifarResNet:
    """ResNet-44 for 32x32 inputs (0.66 M parameters)."""
    return _create(44, pretrained, **kwargs)


@register_model
def resnet56_cifar(pretrained: bool = False, **kwargs: object) -> CifarResNet:
    """ResNet-56 for 32x32 inputs (0.85 M parameters)."""
    return _create(56, pretrained, **kwargs)
