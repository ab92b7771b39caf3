"""model.weights: a local safetensors file (a timm state dict or a bagmar checkpoint) loads into the backbone
offline; a file that does not fit is one Error line naming the keys; checkpoints never read it again."""

import re
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

from bagmar_cli.checkpoint import load_checkpoint
from bagmar_cli.errors import CheckpointError
from bagmar_cli.models import build_model
from bagmar_cli.settings import ModelSettings


def _save(state: dict[str, torch.Tensor], path: Path) -> Path:
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_timm_state_dict_loads_into_the_backbone(tmp_path):
    source = timm.create_model("resnet20_cifar", num_classes=0)
    path = _save(source.state_dict(), tmp_path / "w.safetensors")
    model = build_model(ModelSettings(backbone="resnet20_cifar", weights=path), 10, 3)
    assert _same(model.backbone.state_dict(), source.state_dict())


def test_a_full_timm_model_loses_its_classifier_and_its_stem_is_adapted(tmp_path):
    source = timm.create_model("test_resnet")  # 3 channels, a 1000-class fc
    path = _save(source.state_dict(), tmp_path / "w.safetensors")
    model = build_model(ModelSettings(backbone="test_resnet", weights=path), 5, 1)
    loaded = model.backbone.state_dict()
    stem = "conv1.0.weight"
    assert torch.allclose(loaded[stem], source.state_dict()[stem].sum(1, keepdim=True))  # timm's adapt_input_conv
    assert all(torch.equal(v, source.state_dict()[k]) for k, v in loaded.items() if k != stem)


def test_a_bagmar_checkpoint_gives_its_backbone(digits_run):
    model = build_model(ModelSettings(backbone="resnet20_cifar", weights=digits_run), 3, 1)
    assert _same(model.backbone.state_dict(), load_checkpoint(digits_run).section("model.backbone"))
    assert model.head.weight.shape == (3, 64)  # the head is new: another dataset's classes


def test_a_mismatched_file_names_the_missing_and_unexpected_keys(tmp_path):
    state = timm.create_model("resnet20_cifar", num_classes=0).state_dict()
    state["extra.weight"] = torch.zeros(1)
    del state["stem.0.weight"]
    path = _save(state, tmp_path / "w.safetensors")
    with pytest.raises(CheckpointError, match=r"missing stem\.0\.weight; unexpected extra\.weight$"):
        build_model(ModelSettings(backbone="resnet20_cifar", weights=path), 10, 3)


def test_a_pickle_file_is_refused_unread(tmp_path):
    path = tmp_path / "w.pth"
    path.write_bytes(b"not read")
    with pytest.raises(CheckpointError, match=r"expected a \.safetensors file"):
        build_model(ModelSettings(backbone="resnet20_cifar", weights=path), 10, 3)


def test_train_with_a_wrong_weights_file_is_one_error_line(cli, tmp_path, digits_data):
    path = _save(
        timm.create_model("resnet32_cifar", num_classes=0, in_chans=1).state_dict(), tmp_path / "w.safetensors"
    )
    result = cli(*_train(digits_data, tmp_path / "run", path))
    assert result.code == 1 and result.out == ""
    errors = [line for line in result.err.splitlines() if line.startswith("Error:")]
    assert (
        len(errors) == 1
        and errors[0].startswith("Error: model.weights")
        and re.search(r"unexpected layers\.1\d\.", errors[0])
    )
    assert "Traceback" not in result.err and not (tmp_path / "run").exists()


def test_eval_of_a_run_trained_from_a_weights_file_never_reads_it(cli, tmp_path, digits_data):
    path = _save(
        timm.create_model("resnet20_cifar", num_classes=0, in_chans=1).state_dict(), tmp_path / "w.safetensors"
    )
    trained = cli(*_train(digits_data, tmp_path / "run", path))
    assert trained.code == 0, trained.err
    path.unlink()
    evaluated = cli("eval", trained.out.strip(), "--json")
    assert evaluated.code == 0, evaluated.err
    assert 0.0 <= evaluated.json()["top1"] <= 1.0


def _train(data: Path, out: Path, weights: Path) -> list:
    return [
        "train",
        "--data",
        data,
        "--out",
        out,
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--set",
        "model.backbone=resnet20_cifar",
        "--set",
        f"model.weights='{weights}'",
    ]


def test_pretrained_and_a_weights_file_together_are_refused():
    from bagmar_cli.errors import SettingError
    from bagmar_cli.settings import load_settings

    with pytest.raises(SettingError, match="set one"):
        load_settings(overrides=["model.pretrained=true", "model.weights='w.safetensors'"])
