"""Device choice and RNG capture: a resumed run draws the numbers the uninterrupted one would have."""

import random

import numpy as np
import pytest
import torch

from bagmar_cli.engine.runtime import capture_rng, resolve_device, restore_rng, seed_everything
from bagmar_cli.errors import SettingError


def draws() -> tuple[float, float, list[float]]:
    return random.random(), float(np.random.rand()), torch.rand(3).tolist()


def test_restored_rng_repeats_the_same_draws():
    seed_everything(7)
    draws()
    tensors, meta = capture_rng()
    expected = draws()
    seed_everything(12345)  # anything in between
    draws()
    restore_rng(tensors, meta)
    assert draws() == expected


def test_the_same_seed_gives_the_same_draws():
    seed_everything(3)
    first = draws()
    seed_everything(3)
    assert draws() == first


def test_cpu_and_auto_resolve():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize(("name", "match"), [("tpu", "device 'tpu'"), ("gpu0", "unknown device 'gpu0'")])
def test_unknown_devices_are_usage_errors(name, match):
    with pytest.raises(SettingError, match=match):
        resolve_device(name)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_a_usage_error():
    with pytest.raises(SettingError, match="CUDA is not available"):
        resolve_device("cuda")
