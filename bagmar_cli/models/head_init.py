"""Initial weights of the cosine head (`model.head_init`), written once before training.

class_mean: each class's mean L2-normalised feature (an NCM classifier, the start LIFT compares against);
text: CLIP text features of a prompt per class name (LIFT's start, "a photo of a {}."), through open_clip's text
tower. A cosine head reads only the rows' directions, so either is the classifier as given.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bagmar_cli.errors import DownloadError, SettingError
from bagmar_cli.models.classifier import Classifier
from bagmar_cli.models.extras import require
from bagmar_cli.models.heads import NormedLinear
from bagmar_cli.models.pretrained import hub_access
from bagmar_cli.settings import ModelSettings


@torch.no_grad()
def class_means(
    features: Callable[[torch.Tensor], torch.Tensor], batches: Iterable[tuple[torch.Tensor, torch.Tensor]], classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(classes, dim) means of the L2-normalised `features(x)` per label over `batches`, and the counts per class
    (a class without an image keeps a zero row)."""
    sums: torch.Tensor | None = None
    counts = torch.zeros(classes, dtype=torch.long)
    for x, y in batches:
        f = F.normalize(features(x).float(), dim=1)
        if sums is None:
            sums = torch.zeros(classes, f.shape[1], dtype=f.dtype, device=f.device)
        sums.index_add_(0, y.to(f.device), f)
        counts += torch.bincount(y.cpu(), minlength=classes)
    if sums is None:
        raise SettingError('`model.head_init` = "class_mean" needs training images: the training split is empty')
    return sums / counts.clamp(min=1).to(sums.device).unsqueeze(1).to(sums.dtype), counts


def write_head(head: nn.Module, weights: torch.Tensor, rows: torch.Tensor | None = None) -> None:
    """Copy `weights` (classes, dim) into a cosine head's weight, only the `rows` given (bool mask) if any."""
    if not isinstance(head, NormedLinear):
        raise SettingError('`model.head_init` writes a cosine head: it needs `model.head` = "normed"')
    if tuple(weights.shape) != tuple(head.weight.shape):
        raise SettingError(
            f"`model.head_init`: the head is {tuple(head.weight.shape)} (classes, backbone features) but the "
            f"initial weights are {tuple(weights.shape)}: `model.text_model`'s embedding width must be the backbone's"
        )
    with torch.no_grad():
        keep = torch.ones(len(weights), dtype=torch.bool) if rows is None else rows.bool()
        head.weight[keep.to(head.weight.device)] = weights[keep.to(weights.device)].to(head.weight)


def init_class_mean(model: Classifier, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """Write each class's mean normalised feature into `model.head` (classes without images keep their random
    row); returns the counts per class. The model runs in eval mode meanwhile."""
    was_training = model.training
    model.eval()
    try:
        means, counts = class_means(model.features, batches, model.head.weight.shape[0])
    finally:
        model.train(was_training)
    write_head(model.head, means, counts > 0)
    return counts


@torch.no_grad()
def text_embeddings(
    text_model: Any, tokenizer: Callable[[list[str]], torch.Tensor], names: Sequence[str], prompt: str
) -> torch.Tensor:
    """(classes, dim) L2-normalised `text_model.encode_text` of `prompt` filled with each class name."""
    tokens = tokenizer([prompt.format(name.replace("_", " ")) for name in names])
    features: torch.Tensor = text_model.encode_text(tokens)
    return F.normalize(features.float(), dim=1)


def load_text_model(settings: ModelSettings) -> tuple[Any, Callable[[list[str]], torch.Tensor]]:
    """open_clip's `settings.text_model` (weights from `text_weights`, else `text_pretrained` from its hub) and its
    tokenizer, in eval mode."""
    open_clip = require("open_clip", "model.head_init", "text")
    local = settings.text_weights is not None
    with nullcontext(True) if local else hub_access() as online:
        try:
            model = open_clip.create_model(
                settings.text_model, pretrained=str(settings.text_weights) if local else settings.text_pretrained
            )
        except (OSError, RuntimeError) as exc:
            if local:
                raise SettingError(f"`model.text_weights` {settings.text_weights}: {exc}") from None
            where = "the download failed" if online else "the hub is offline and they are not in the local cache"
            raise DownloadError(
                f'`model.head_init` = "text" needs open_clip\'s {settings.text_model!r} weights '
                f"{settings.text_pretrained!r}, but {where}: set `model.text_weights` = FILE (a local open_clip "
                "weights file) instead, or run once with network access"
            ) from None
    return model.eval(), open_clip.get_tokenizer(settings.text_model)


def init_text(model: Classifier, settings: ModelSettings, class_names: Sequence[str]) -> None:
    """Write the CLIP text features of `settings.text_prompt` per class name into `model.head`."""
    text_model, tokenizer = load_text_model(settings)
    write_head(model.head, text_embeddings(text_model, tokenizer, class_names, settings.text_prompt))
