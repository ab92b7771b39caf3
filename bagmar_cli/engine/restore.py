"""Rebuild what a checkpoint describes: its settings, its model, and the dataset it was trained on."""

from __future__ import annotations

from pathlib import Path

from bagmar_cli.checkpoint import Checkpoint
from bagmar_cli.data import Manifest, load_manifest
from bagmar_cli.errors import CheckpointError, DatasetError
from bagmar_cli.models import Classifier, build_model


def model_from_checkpoint(ckpt: Checkpoint) -> Classifier:
    """The model with the checkpoint's weights, in eval mode; never downloads pretrained weights (its own are)."""
    spec = ckpt.meta.model
    settings = ckpt.meta.settings.model.model_copy(update={"pretrained": False})
    model = build_model(settings, spec.num_classes, spec.input_size[0])
    try:
        model.load_state_dict(ckpt.section("model"))
    except RuntimeError as exc:
        raise CheckpointError(
            f"{ckpt.path}: weights do not fit the model it describes ({str(exc).splitlines()[0]})"
        ) from None
    return model.eval()


def checkpoint_dataset(ckpt: Checkpoint, override: Path | None = None) -> tuple[Path, Manifest]:
    """The dataset directory (`--data` or the one recorded at training) and its manifest, checked against the model."""
    recorded = ckpt.meta.dataset.root if ckpt.meta.dataset else ""
    root = Path(override) if override else Path(recorded)
    if not override and not root.is_dir():
        raise DatasetError(f"the dataset this checkpoint was trained on ({root}) is not there; pass --data DIR")
    manifest = load_manifest(root)
    expected = ckpt.meta.model.num_classes
    if manifest.num_classes != expected:
        raise DatasetError(f"dataset {root} has {manifest.num_classes} classes but the checkpoint predicts {expected}")
    return root, manifest


def evaluation_split(manifest: Manifest) -> str:
    """The held-out split tuning and checks use: val when the dataset has one, else test."""
    return "val" if "val" in manifest.splits else "test"
