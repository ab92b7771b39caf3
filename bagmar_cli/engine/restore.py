"""Rebuild what a checkpoint describes: its settings, its model, and the dataset it was trained on."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

from bagmar_cli.checkpoint import Checkpoint, load_checkpoint
from bagmar_cli.data import Manifest, load_manifest
from bagmar_cli.errors import CheckpointError, DatasetError, SettingError
from bagmar_cli.models import Classifier, build_model

Weights = Literal["ema", "model"]
WEIGHTS = ("ema", "model")


def default_weights(ckpt: Checkpoint) -> Weights:
    """The weights validation scored, so eval and export use them unless told otherwise: the EMA's when the run
    kept one (`train.ema`), else the model's. A bundle holds only the weights it was exported with."""
    return "ema" if ckpt.meta.kind == "checkpoint" and ckpt.meta.settings.train.ema else "model"


def load_weights(path: Path, weights: str | None = None) -> Checkpoint:
    """The checkpoint at `path` with `weights` (default: `default_weights`) as its `model.` tensors."""
    ckpt = load_checkpoint(path)
    if weights is not None and weights not in WEIGHTS:
        raise SettingError(f"`weights` {weights!r}: choose from {', '.join(WEIGHTS)}")
    if (weights or default_weights(ckpt)) == "model":
        return ckpt
    ema = ckpt.section("ema")
    if not ema:
        raise SettingError(f"`weights` ema: {ckpt.path} holds no EMA weights (trained without train.ema)")
    kept = {key: value for key, value in ckpt.tensors.items() if not key.startswith(("model.", "ema."))}
    return dataclasses.replace(ckpt, tensors=kept | {f"model.{key}": value for key, value in ema.items()})


def model_from_checkpoint(ckpt: Checkpoint) -> Classifier:
    """The model with the checkpoint's weights, in eval mode; never downloads pretrained weights nor reads
    `model.weights` again (its own tensors are the weights)."""
    spec = ckpt.meta.model
    settings = ckpt.meta.settings.model.model_copy(update={"pretrained": False, "weights": None})
    model = build_model(settings, spec.num_classes, spec.input_size[0])
    try:
        model.load_state_dict(ckpt.section("model"))
    except RuntimeError as exc:
        raise CheckpointError(
            f"{ckpt.path}: weights do not fit the model it describes ({str(exc).splitlines()[0]})"
        ) from None
    return model.eval()


def checkpoint_dataset(ckpt: Checkpoint, override: Path | None = None) -> tuple[Path, Manifest]:
    """The dataset directory (the `data` option, else the one recorded at training) and its manifest, checked
    against the model."""
    recorded = ckpt.meta.dataset.root if ckpt.meta.dataset else ""
    root = Path(override) if override else Path(recorded)
    if not override and not root.is_dir():
        raise DatasetError(f"the dataset this checkpoint was trained on ({root}) is not there; pass `data` DIR")
    manifest = load_manifest(root)
    expected = ckpt.meta.model.num_classes
    if manifest.num_classes != expected:
        raise DatasetError(f"dataset {root} has {manifest.num_classes} classes but the checkpoint predicts {expected}")
    return root, manifest


def evaluation_split(manifest: Manifest) -> str:
    """The held-out split tuning and checks use: val when the dataset has one, else test."""
    return "val" if "val" in manifest.splits else "test"
