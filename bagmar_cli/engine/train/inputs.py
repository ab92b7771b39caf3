"""What the network sees in a run: the size, the normalisation and (image files) the evaluation preprocessing.

A backbone that brings pretrained weights brings its own data config (`models.preprocess.backbone_data_config`):
its mean and std normalise the images, and for image files its input size, interpolation and crop fraction give
the crop and the evaluation resize, unless `data.crop` is set (then the crop, and the resize scaled to it, are
the dataset's as before; mean, std and interpolation still the backbone's). A backbone from a bagmar checkpoint
(`model.weights`, stage 2's start) sees what it was trained on: the checkpoint's recorded ModelSpec. Otherwise the
dataset's statistics apply. Recorded once in the run's checkpoints, so eval, predict and export follow it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from bagmar_cli.checkpoint import checkpoint_meta_of
from bagmar_cli.checkpoint_meta import ModelSpec
from bagmar_cli.data import Manifest
from bagmar_cli.data.images import INTERPOLATIONS, EvalPreprocess
from bagmar_cli.data.splits import dataset_preprocess, is_file_list
from bagmar_cli.models.preprocess import BackboneDataConfig, backbone_data_config
from bagmar_cli.settings import Settings


@dataclass(frozen=True)
class RunInputs:
    """The inputs of a run's network: normalisation, (height, width), and the preprocessing of image files."""

    mean: list[float]
    std: list[float]
    size: tuple[int, int]
    preprocess: EvalPreprocess | None  # image files only; tensor datasets are at their stored size


def run_inputs(settings: Settings, manifest: Manifest) -> RunInputs:
    """The inputs of a run with `settings` on the dataset of `manifest` (see the module's docstring)."""
    weights = settings.model.weights
    recorded = checkpoint_meta_of(weights) if weights is not None else None
    if recorded is not None:
        return _as_recorded(recorded.model, settings, manifest)
    config = backbone_data_config(settings.model)
    channels = manifest.image_size[0]
    mean, std = list(manifest.mean), list(manifest.std)
    if config is not None:
        mean, std = _per_channel(config.mean, channels), _per_channel(config.std, channels)
    if not is_file_list(manifest, "train"):
        _, height, width = manifest.image_size
        return RunInputs(mean, std, (height, width), None)
    crop = settings.data.crop
    if config is not None and crop is None:
        crop = config.input_size[1]
    preprocess = dataset_preprocess(manifest, crop)
    if config is not None:
        preprocess = _following(preprocess, config, manifest, scale_resize=settings.data.crop is None)
    preprocess = EvalPreprocess(**(preprocess.model_dump() | {"mean": mean, "std": std}))
    return RunInputs(mean, std, (preprocess.crop, preprocess.crop), preprocess)


def _as_recorded(spec: ModelSpec, settings: Settings, manifest: Manifest) -> RunInputs:
    """The inputs a bagmar checkpoint's backbone was trained on (`spec`): its normalisation, and for image files its
    preprocessing unless `data.crop` asks for another crop."""
    channels = manifest.image_size[0]
    mean, std = _per_channel(tuple(spec.mean), channels), _per_channel(tuple(spec.std), channels)
    if not is_file_list(manifest, "train"):
        _, height, width = manifest.image_size
        return RunInputs(mean, std, (height, width), None)
    preprocess = spec.preprocess
    if preprocess is None or settings.data.crop not in (None, preprocess.crop):
        preprocess = dataset_preprocess(manifest, settings.data.crop)
    preprocess = EvalPreprocess(**(preprocess.model_dump() | {"mean": mean, "std": std}))
    return RunInputs(mean, std, (preprocess.crop, preprocess.crop), preprocess)


def _following(
    preprocess: EvalPreprocess, config: BackboneDataConfig, manifest: Manifest, *, scale_resize: bool
) -> EvalPreprocess:
    """`preprocess` with the backbone's interpolation and (`scale_resize`) its crop fraction's resize; small images,
    evaluated whole (`manifest.eval_resize`), keep their resize."""
    update: dict[str, object] = {}
    if config.interpolation in INTERPOLATIONS:
        update["interpolation"] = config.interpolation
    if scale_resize and manifest.eval_resize is None:
        update["resize"] = max(preprocess.crop, math.floor(preprocess.crop / config.crop_pct))
    return EvalPreprocess(**(preprocess.model_dump() | update))


def _per_channel(values: tuple[float, ...], channels: int) -> list[float]:
    """The config's per-channel values for `channels` inputs: as given, or their average for a grey dataset (timm
    sums a 3-channel stem into one, so one channel sees the average)."""
    if len(values) == channels:
        return list(values)
    return [sum(values) / len(values)] * channels
