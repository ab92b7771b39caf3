"""Long-tail profiles (images per class) and the deterministic per-class image selection."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable

import numpy as np

from bagmar_cli.choices import did_you_mean
from bagmar_cli.errors import SettingError


def _exp_profile(n_max: int, num_classes: int, imb: float) -> list[int]:
    """n_i = floor(n_max * (1/imb)^(i/(C-1))), computed exactly as the CIFAR-LT reference code does."""
    return [int(n_max * (1 / imb) ** (i / (num_classes - 1))) for i in range(num_classes)]


def _step_profile(n_max: int, num_classes: int, imb: float) -> list[int]:
    """The first half of the classes keep n_max, the rest floor(n_max / imb)."""
    head = num_classes // 2
    return [n_max] * head + [int(n_max * (1 / imb))] * (num_classes - head)


PROFILES: dict[str, Callable[[int, int, float], list[int]]] = {"exp": _exp_profile, "step": _step_profile}


def check_imb(imb: float) -> float:
    """`imb` as a float when it is a finite number >= 1; SettingError otherwise."""
    if isinstance(imb, bool) or not isinstance(imb, (int, float)) or not math.isfinite(imb) or imb < 1:
        raise SettingError(f"imbalance factor must be a finite number >= 1, got {imb!r}")
    return float(imb)


def check_profile(profile: str) -> str:
    """`profile` when it names a known profile; SettingError with suggestions otherwise."""
    if profile in PROFILES:
        return profile
    hint = did_you_mean(str(profile), PROFILES, quote=False)
    raise SettingError(f"unknown long-tail profile {profile!r}{hint}; choose from {', '.join(PROFILES)}")


def lt_counts(n_max: int, num_classes: int, imb: float, profile: str) -> list[int]:
    """Training images per class, in label order, for the long-tail `profile` at imbalance `imb`."""
    if num_classes < 2 or n_max < 1:
        raise SettingError(f"a long tail needs at least 2 classes and n_max >= 1, got {num_classes} and {n_max}")
    return PROFILES[check_profile(profile)](n_max, num_classes, check_imb(imb))


def shuffled_by_class(labels: np.ndarray, num_classes: int, seed: int) -> list[np.ndarray]:
    """Indices of each class's images in a random order that is a pure function of `seed`.

    Taking a prefix of each list selects images; one permutation per class, drawn in label order.
    """
    rng = np.random.default_rng(seed)
    return [rng.permutation(np.flatnonzero(labels == c)) for c in range(num_classes)]


SUBSETS = ("bagmar", "cao2019")  # which images a long tail keeps: bagmar's own draw, or Cao et al.'s (LDAM-DRW)
CAO2019_DATASETS = ("cifar10", "cifar100")  # the datasets Cao et al.'s imbalance_cifar.py draws from


def check_subset(subset: str, dataset: str, val_per_class: int) -> str:
    """`subset` when it is known and applies to `dataset` (cao2019: CIFAR only, no val split); else SettingError."""
    if subset not in SUBSETS:
        hint = did_you_mean(str(subset), SUBSETS, quote=False)
        raise SettingError(f"unknown subset {subset!r}{hint}; choose from {', '.join(SUBSETS)}")
    if subset == "cao2019" and dataset not in CAO2019_DATASETS:
        raise SettingError(
            f"subset cao2019 is Cao et al.'s CIFAR-LT selection; it applies to cifar10 and cifar100, not {dataset}"
        )
    if subset == "cao2019" and val_per_class:
        raise SettingError(
            "subset cao2019 keeps every image Cao et al.'s code keeps for training, so it takes no val split"
        )
    return subset


def select_cao2019(labels: np.ndarray, counts: list[int], seed: int) -> np.ndarray:
    """The training images Cao et al.'s imbalance_cifar.py (LDAM-DRW, NeurIPS 2019) keeps, in its order.

    Its IMBALANCECIFAR10 seeds numpy's legacy global generator (np.random.seed(rand_number), rand_number 0 by
    default), then for each class in label order shuffles that class's indices with np.random.shuffle and keeps the
    first n_c. A RandomState seeded alike draws the same numbers without touching numpy's global state.
    """
    legacy = np.random.RandomState(seed)
    kept = []
    for label, count in enumerate(counts):
        pool = np.where(labels == label)[0]
        legacy.shuffle(pool)
        kept.append(pool[:count])
    return np.concatenate(kept)


def selection_sha256(indices: np.ndarray) -> str:
    """SHA-256 of the kept source indices as little-endian int64, in the order kept: which images, told apart."""
    return hashlib.sha256(np.ascontiguousarray(indices, dtype="<i8").tobytes()).hexdigest()


def select_long_tail(
    labels: np.ndarray,
    classes: list[str],
    *,
    n_max: int | None,
    imb: float | None,
    profile: str,
    seed: int,
    val_per_class: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Indices into `labels` of the long-tailed train split and of the balanced val split (empty when 0 per class).

    Each class's images are shuffled once by `seed`: the first val_per_class go to val, the next
    min(n_i, what remains) to train. `n_max` None: the smallest class's pool, less the val images.
    `imb` None: no long tail is drawn, train keeps every image val does not take.
    """
    pools = shuffled_by_class(labels, len(classes), seed)
    sizes = [len(pool) for pool in pools]
    _check_val(val_per_class, sizes, classes)
    if imb is None:
        wanted = [size - val_per_class for size in sizes]
    else:
        n_max = n_max if n_max is not None else min(sizes) - val_per_class
        wanted = lt_counts(n_max, len(classes), imb, profile)
        _check_nonempty(wanted, classes, imb, n_max)
    train = np.concatenate([pool[val_per_class : val_per_class + n] for pool, n in zip(pools, wanted, strict=True)])
    val = np.concatenate([pool[:val_per_class] for pool in pools])
    return train, val


def _check_val(val_per_class: int, sizes: list[int], classes: list[str]) -> None:
    """SettingError when the val split would leave a class without training images."""
    smallest = int(np.argmin(sizes))
    if val_per_class >= sizes[smallest]:
        raise SettingError(
            f"val_per_class {val_per_class} leaves class {classes[smallest]!r} no training images "
            f"(its pool holds {sizes[smallest]}); use fewer than {sizes[smallest]}"
        )


def _check_nonempty(wanted: list[int], classes: list[str], imb: float, n_max: int) -> None:
    """SettingError when the imbalance factor rounds a class down to zero training images."""
    if min(wanted) == 0:
        empty = classes[wanted.index(0)]
        raise SettingError(
            f"imbalance factor {imb:g} leaves class {empty!r} no training images "
            f"(n_max is {n_max}); use an imbalance factor of at most {n_max}"
        )
