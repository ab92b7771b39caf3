"""model.freeze: frozen parameters do not learn and are not optimised; frozen BatchNorm statistics stay put
(model.frozen_bn = "eval") or drift as in the authors' code ("train")."""

import pytest
import timm
import torch

from bagmar_cli.checkpoint import load_checkpoint
from bagmar_cli.errors import SettingError
from bagmar_cli.models import build_model
from bagmar_cli.models.freeze import freeze
from bagmar_cli.settings import ModelSettings


def _trainable(model):
    return [name for name, p in model.named_parameters() if p.requires_grad]


def test_freezing_the_backbone_leaves_the_head():
    model = build_model(ModelSettings(backbone="resnet20_cifar"), 10, 3)
    norms = freeze(model, "backbone")
    assert _trainable(model) == ["head.weight", "head.bias"]
    assert len(norms) == 19 and all(not n.weight.requires_grad for n in norms)  # stem + 2 per block of 9


@pytest.mark.parametrize(
    ("backbone", "last_stage"),
    [("resnet20_cifar", ("layers.6.", "layers.7.", "layers.8.")), ("test_resnet", ("layer4.",))],
)
def test_all_but_last_stage_leaves_the_last_stage_and_the_head(backbone, last_stage):
    model = build_model(ModelSettings(backbone=backbone), 10, 3)
    freeze(model, "all_but_last_stage")
    trainable = _trainable(model)
    assert trainable[-2:] == ["head.weight", "head.bias"]
    backbone_names = [
        name.removeprefix("backbone.") for name, _ in model.named_parameters() if name.startswith("backbone.")
    ]
    expected = [name for name in backbone_names if name.startswith(last_stage)]
    assert expected and trainable[:-2] == [f"backbone.{name}" for name in expected]


def test_a_backbone_without_stages_cannot_freeze_all_but_the_last(monkeypatch):
    model = build_model(ModelSettings(backbone="resnet20_cifar"), 10, 3)
    del model.backbone.feature_info
    with pytest.raises(SettingError, match="does not list its stages"):
        freeze(model, "all_but_last_stage")


def _stage2(cli, digits_data, digits_run, out, *sets):
    args = ["train", "--data", digits_data, "--out", out, "--epochs", "1", "--device", "cpu"]
    args += ["--set", "model.backbone=resnet20_cifar", "--set", f"model.weights='{digits_run}'"]
    for item in sets:
        args += ["--set", item]
    result = cli(*args)
    assert result.code == 0, result.err
    return load_checkpoint(out / "last.safetensors")


def test_a_frozen_backbone_and_its_batchnorm_statistics_are_bit_identical_after_an_epoch(
    cli, digits_data, digits_run, tmp_path
):
    start = load_checkpoint(digits_run).section("model.backbone")
    after = _stage2(cli, digits_data, digits_run, tmp_path / "run", "model.freeze=backbone", "data.sampler=class_aware")
    backbone = after.section("model.backbone")
    assert backbone.keys() == start.keys() and all(torch.equal(backbone[k], start[k]) for k in start)
    assert not torch.equal(after.tensors["model.head.weight"], load_checkpoint(digits_run).tensors["model.head.weight"])
    assert [len(g["params"]) for g in after.meta.optimizer_param_groups] == [2]  # the head's weight and bias only


def test_frozen_bn_train_lets_the_statistics_drift_as_the_authors_do(cli, digits_data, digits_run, tmp_path):
    start = load_checkpoint(digits_run).section("model.backbone")
    after = _stage2(cli, digits_data, digits_run, tmp_path / "run", "model.freeze=backbone", "model.frozen_bn=train")
    backbone = after.section("model.backbone")
    params = {name for name, _ in timm.create_model("resnet20_cifar", num_classes=0).named_parameters()}
    assert all(torch.equal(backbone[k], start[k]) for k in params)
    assert not torch.equal(backbone["stem.1.running_mean"], start["stem.1.running_mean"])


def test_all_but_last_stage_trains_only_the_last_stage(cli, digits_data, digits_run, tmp_path):
    start = load_checkpoint(digits_run).section("model.backbone")
    backbone = _stage2(cli, digits_data, digits_run, tmp_path / "run", "model.freeze=all_but_last_stage").section(
        "model.backbone"
    )
    last = ("layers.6.", "layers.7.", "layers.8.")
    assert all(torch.equal(backbone[k], start[k]) for k in start if not k.startswith(last))
    assert not torch.equal(backbone["layers.8.conv2.weight"], start["layers.8.conv2.weight"])


def test_a_frozen_backbone_without_weights_is_refused_before_the_run_starts(cli, digits_data, tmp_path):
    args = ["train", "--data", digits_data, "--out", tmp_path / "run", "--epochs", "1", "--device", "cpu"]
    outcome = cli(*args, "--set", "model.backbone=resnet20_cifar", "--set", "model.freeze=backbone")
    assert outcome.code == 2 and not (tmp_path / "run").exists()
    assert outcome.err == (
        'Error: model.freeze = "backbone" keeps the backbone as it starts, and nothing gives it weights: set '
        "`model.weights` to a file (a stage-1 checkpoint or a timm state dict) or `model.pretrained` to true\n"
    )
