"""The dataset registry, and where datasets are written by default."""

from pathlib import Path

import pytest

from bagmar_cli.data import dataset_names, default_data_dir, get_dataset
from bagmar_cli.errors import SettingError


def test_every_dataset_is_registered():
    assert dataset_names() == ["cifar10", "cifar100", "digits", "fashion_mnist"]


@pytest.mark.parametrize("name", dataset_names())
def test_specs_are_consistent(name):
    spec = get_dataset(name)
    channels = spec.image_size[0]
    assert spec.name == name and spec.num_classes >= 2 and len(spec.image_size) == 3
    assert len(spec.mean) == len(spec.std) == channels
    assert all(0 < m < 1 for m in spec.mean) and all(0 < s < 1 for s in spec.std)
    assert spec.default_preset == f"{name}_lt" and callable(spec.load_source)


def test_unknown_dataset_suggests_close_names():
    with pytest.raises(
        SettingError, match=r"unknown dataset 'cifar' \(did you mean cifar10, cifar100\?\); choose from"
    ):
        get_dataset("cifar")
    with pytest.raises(SettingError, match=r"unknown dataset 'imagenet'; choose from cifar10, cifar100, digits"):
        get_dataset("imagenet")


def test_default_data_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("BAGMAR_DATA_DIR", raising=False)
    assert default_data_dir("cifar100", 100.0) == Path("data/cifar100-lt-imb100")
    monkeypatch.setenv("BAGMAR_DATA_DIR", str(tmp_path))
    assert default_data_dir("cifar10", 12.5, "step") == tmp_path / "cifar10-lt-imb12.5-step"
