"""prepare_dataset as a user meets it: options checked first, outputs never half-written or clobbered."""

import os

import pytest

from bagmar_cli.data import load_manifest, prepare_dataset
from bagmar_cli.errors import DatasetError, SettingError


def test_existing_directory_is_kept_unless_overwrite(tmp_path, monkeypatch):
    out = tmp_path / "ds"
    prepare_dataset("digits", imb=10, out=out)
    monkeypatch.setattr("sklearn.datasets.load_digits", _never)  # refused before the source is read
    with pytest.raises(DatasetError, match="already exists; pass `overwrite`"):
        prepare_dataset("digits", imb=20, out=out)
    assert load_manifest(out).imb == 10
    monkeypatch.undo()
    prepare_dataset("digits", imb=20, out=out, overwrite=True)
    assert load_manifest(out).imb == 20 and sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_a_failure_while_writing_leaves_nothing(tmp_path, monkeypatch):
    out = tmp_path / "ds"
    prepare_dataset("digits", imb=10, out=out)
    monkeypatch.setattr("bagmar_cli.data.sources.tensors.write_manifest", _never)
    with pytest.raises(RuntimeError):
        prepare_dataset("digits", imb=20, out=out, overwrite=True)
    assert load_manifest(out).imb == 10 and sorted(p.name for p in tmp_path.iterdir()) == ["ds"]
    with pytest.raises(RuntimeError):
        prepare_dataset("digits", imb=20, out=tmp_path / "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_output_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "ds").write_text("mine")
    with pytest.raises(SettingError, match="exists and is not a directory"):  # exit 2, as `train --out FILE`
        prepare_dataset("digits", out=tmp_path / "ds", overwrite=True)
    assert (tmp_path / "ds").read_text() == "mine"


def test_default_output_follows_the_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("BAGMAR_DATA_DIR", str(tmp_path))
    assert prepare_dataset("digits", imb=10, profile="step") == tmp_path / "digits-lt-imb10-step"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (dict(imb=0.5), "imbalance factor must be a finite number >= 1"),
        (dict(profile="linear"), "unknown long-tail profile 'linear'"),
        (dict(seed=-1), "seed must be a whole number >= 0"),
        (dict(val_per_class=1.5), "val_per_class must be a whole number >= 0"),
        (dict(val_per_class=144), "val_per_class 144 leaves class '8' no training images"),
    ],
)
def test_bad_options_are_usage_errors(tmp_path, options, message):
    with pytest.raises(SettingError, match=message):
        prepare_dataset("digits", out=tmp_path / "ds", **options)
    assert list(tmp_path.iterdir()) == []


def _never(*args, **kwargs):
    raise RuntimeError("must not be called")


def test_files_are_readable_as_the_umask_allows(tmp_path):
    umask = os.umask(0o022)
    try:
        out = prepare_dataset("digits", imb=10, out=tmp_path / "ds")
    finally:
        os.umask(umask)
    assert {p.name: p.stat().st_mode & 0o777 for p in out.iterdir()} == dict.fromkeys(
        ["manifest.json", "train.safetensors", "test.safetensors"], 0o644
    )
    assert out.stat().st_mode & 0o777 == 0o755
