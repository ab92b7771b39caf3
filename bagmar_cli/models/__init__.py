"""Backbones (timm, plus our registered CIFAR ResNets) and classifier heads."""

from bagmar_cli.models import resnet_cifar  # noqa: F401  (registers the CIFAR ResNets with timm)
from bagmar_cli.models.classifier import Classifier, build_model
from bagmar_cli.models.heads import HEADS, NormedLinear

__all__ = ["HEADS", "Classifier", "NormedLinear", "build_model"]
