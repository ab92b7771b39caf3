"""Backbone weights from a local safetensors file (`model.weights`), loaded offline through timm's loader.

The file is a timm state dict (the backbone's own keys; a full model's classifier is dropped, a 3-channel stem is
adapted to the input's channels as timm does for pretrained weights) or a bagmar checkpoint, whose
`model.backbone.*` tensors are taken (with its adapters, unmerged, when it was trained under `model.peft`:
`holds_adapters`). Anything else that does not fit is one error naming the keys.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from timm.models import adapt_input_conv, load_checkpoint
from torch import nn

from bagmar_cli.errors import CheckpointError
from bagmar_cli.models.adapters import is_adapter

BACKBONE_PREFIX = "model.backbone."  # a bagmar checkpoint's backbone tensors
MAX_NAMED_KEYS = 5  # keys named in a mismatch error; the rest are counted


def load_backbone_weights(backbone: nn.Module, path: Path) -> None:
    """Load `path` into `backbone` (timm.models.load_checkpoint, strict); CheckpointError when it does not fit."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise CheckpointError(f"model.weights {path}: expected a .safetensors file (pickle files are never read)")
    if not path.is_file():
        raise CheckpointError(f"model.weights {path}: no such file")
    try:
        load_checkpoint(backbone, str(path), use_ema=False, strict=True, filter_fn=partial(backbone_state, path=path))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"model.weights {path} is not a valid safetensors file ({exc})") from None


def holds_adapters(path: Path) -> bool:
    """Whether weights file `path` is a bagmar checkpoint whose backbone holds adapters (a `model.peft` run's): its
    backbone loads after the same adapters are added (stage 2 of such a run)."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            keys = list(handle.keys())
    except (SafetensorError, OSError):
        return False  # load_backbone_weights names the problem
    return any(key.startswith(BACKBONE_PREFIX) and is_adapter(key) for key in keys)


def backbone_state(state: dict[str, torch.Tensor], model: nn.Module, *, path: Path) -> dict[str, torch.Tensor]:
    """The tensors of `state` that are `model`'s: a bagmar checkpoint's backbone section, or a timm state dict
    without the classifier `model` lacks and with its stem adapted to `model`'s input channels."""
    if any(key.startswith(BACKBONE_PREFIX) for key in state):
        state = {key[len(BACKBONE_PREFIX) :]: value for key, value in state.items() if key.startswith(BACKBONE_PREFIX)}
    own = model.state_dict()
    cfg = getattr(model, "pretrained_cfg", None) or {}
    for name in _as_list(cfg.get("classifier")):
        for key in (f"{name}.weight", f"{name}.bias"):
            if key in state and key not in own:
                del state[key]
    stem = f"{cfg['first_conv']}.weight" if isinstance(cfg.get("first_conv"), str) else None
    if stem in state and stem in own and state[stem].shape[1] != own[stem].shape[1]:
        state[stem] = adapt_input_conv(own[stem].shape[1], state[stem])
    _check_fit(state, own, path)
    return state


def _check_fit(state: dict[str, torch.Tensor], own: dict[str, torch.Tensor], path: Path) -> None:
    missing = sorted(own.keys() - state.keys())
    unexpected = sorted(state.keys() - own.keys())
    shapes = [
        f"{k} {list(state[k].shape)} != {list(own[k].shape)}"
        for k in sorted(own.keys() & state.keys())
        if state[k].shape != own[k].shape
    ]
    parts = [
        f"{what} {_some(keys)}"
        for what, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes))
        if keys
    ]
    if parts:
        raise CheckpointError(f"model.weights {path} does not fit the backbone: {'; '.join(parts)}")


def _some(keys: list[str]) -> str:
    named = ", ".join(keys[:MAX_NAMED_KEYS])
    return named if len(keys) <= MAX_NAMED_KEYS else f"{named} and {len(keys) - MAX_NAMED_KEYS} more"


def _as_list(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    return [v for v in value if isinstance(v, str)] if isinstance(value, (list, tuple)) else []
