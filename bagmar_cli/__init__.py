"""bagmar: long-tailed image classification with the BaGMar (GALA) loss and prediction normalisation."""

__version__ = "0.1.0"
