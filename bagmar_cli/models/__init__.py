"""Backbones (timm, plus our registered CIFAR ResNets and tiny ViT) and classifier heads."""

from bagmar_cli.models import (
    resnet_cifar,  # noqa: F401  (registers the CIFAR ResNets with timm)
    vit_small_images,  # noqa: F401  (registers vit_tiny_28 with timm)
)
from bagmar_cli.models.classifier import Classifier, build_model
from bagmar_cli.models.heads import HEADS, NormedLinear

__all__ = ["HEADS", "Classifier", "NormedLinear", "build_model"]
