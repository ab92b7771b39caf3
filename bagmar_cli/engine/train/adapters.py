"""The adapters-only file a `model.peft` run writes beside best.safetensors: what a user shares.

Its tensors are `models.finetune.adapter_state_dict` of the selected weights (the EMA's when `train.ema` is on):
adapters, head, and the norms or biases asked to train, keyed as in the model's state. Its metadata names the base
they fit: the model settings (backbone, `model.peft` and its options) and the SHA-256 of `model.weights`.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import torch

from bagmar_cli.checkpoint import file_sha256
from bagmar_cli.checkpoint_meta import AdapterMeta
from bagmar_cli.engine.train.build import Job


def adapters_file(job: Job) -> tuple[dict[str, torch.Tensor], AdapterMeta]:
    """The tensors and metadata of `job`'s adapters-only file, from the weights validation scores."""
    trained = {name for name, param in job.model.named_parameters() if param.requires_grad}
    state = job.eval_model.state_dict()
    tensors = {name: tensor for name, tensor in state.items() if name in trained}
    weights = job.settings.model.weights
    meta = AdapterMeta(
        model=job.settings.model,
        num_classes=job.manifest.num_classes,
        in_chans=job.manifest.image_size[0],
        classes=list(job.manifest.classes),
        base_weights=None if weights is None else str(weights),
        base_weights_sha256=_base_sha256(weights),
    )
    return tensors, meta


def _base_sha256(weights: Path | None) -> str | None:
    """The SHA-256 of the base weights file, None without one (or once it is gone, on a resume)."""
    if weights is None or not Path(weights).is_file():
        return None
    stat = Path(weights).stat()
    return _sha256(Path(weights).resolve(), stat.st_mtime_ns, stat.st_size)


@cache
def _sha256(path: Path, mtime_ns: int, size: int) -> str:
    """A file's SHA-256, read once per process and version of it (the adapters are written every best epoch)."""
    return file_sha256(path)
