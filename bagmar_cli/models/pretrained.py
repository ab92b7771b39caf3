"""timm's pretrained weights (`model.pretrained`) without a minute of retries when the hub cannot be reached.

Before timm asks the Hugging Face hub for weights, one connection to the hub (or to the HTTPS proxy the
environment names) is tried with a short timeout. When it fails, or when HF_HUB_OFFLINE is set, timm runs with
huggingface_hub's offline mode on: weights already in the local cache load, anything else fails at once, and the
error names `model.weights`, the offline way to give a backbone its weights.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

from huggingface_hub import constants

PROBE_TIMEOUT_S = 3.0  # one TCP connection; a hub that answers slower than this is treated as unreachable
OFFLINE_VALUES = ("1", "on", "yes", "true")


def hub_endpoint() -> str:
    """The hub's address (HF_ENDPOINT, else huggingface.co), as huggingface_hub uses it."""
    return str(constants.ENDPOINT)


def offline_requested() -> bool:
    """True when the environment asks for offline mode (HF_HUB_OFFLINE, read now, not at import)."""
    given = os.environ.get("HF_HUB_OFFLINE", "").strip().lower()
    return given in OFFLINE_VALUES or bool(constants.is_offline_mode())


def hub_reachable(endpoint: str | None = None, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether a TCP connection to the hub (or the HTTPS proxy in the environment) opens within `timeout`."""
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    address = urlsplit(proxy or endpoint or hub_endpoint())
    if address.hostname is None:
        return False
    port = address.port or (443 if address.scheme == "https" else 80)
    try:
        with socket.create_connection((address.hostname, port), timeout=timeout):
            return True
    except OSError:  # no DNS, refused, unreachable, timed out
        return False


@contextlib.contextmanager
def hub_access() -> Iterator[bool]:
    """Yields whether the hub is reachable; while it is not, huggingface_hub is in offline mode (cache only)."""
    online = not offline_requested() and hub_reachable()
    saved = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = saved or not online
    try:
        yield online
    finally:
        constants.HF_HUB_OFFLINE = saved


def pretrained_failure(backbone: str, online: bool, exc: BaseException) -> str:
    """The one line for pretrained weights that could not be had, naming `model.weights`."""
    where = (
        f"the hub ({hub_endpoint()}) is offline or cannot be reached and they are not in the local cache"
        if not online
        else f"the download failed ({' '.join(str(exc).split())[:200]})"
    )
    return (
        f"model.pretrained = true needs timm's weights for {backbone!r}, but {where}: set model.weights = FILE "
        "(a local safetensors file of the backbone's weights) instead, or run once with network access"
    )
