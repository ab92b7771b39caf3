"""Stage 2 on Fashion-MNIST-LT: the presets say what docs/fmnist.md says they do, and through the real CLI on the
real files a stage-2 run changes the classifier only (every backbone tensor, BatchNorm statistics included, stays
stage 1's bit for bit)."""

from pathlib import Path

import pytest
import torch

from bagmar_cli.checkpoint import load_checkpoint
from bagmar_cli.data.sources.fashion_mnist import SYSTEM_DIR
from bagmar_cli.settings import changed_settings, load_settings

needs_fashion_mnist = pytest.mark.skipif(
    not SYSTEM_DIR.is_dir(), reason=f"{SYSTEM_DIR} is absent (apt-get install dataset-fashion-mnist)"
)


def test_the_stage2_preset_retrains_the_head_with_bagmar_on_a_frozen_backbone_drawn_class_aware():
    recipe, stage2 = load_settings("fashion_mnist_lt"), load_settings("fashion_mnist_lt_stage2")
    changed = {key: (old, new) for key, old, new in changed_settings(recipe, stage2)}
    assert changed == {
        "data.sampler": ("instance", "class_aware"),
        "model.freeze": ("none", "backbone"),
        "schedule.warmup_epochs": (1, 0),
        "train.epochs": (8, 4),
    }
    assert (stage2.data.samples_per_class, stage2.model.frozen_bn, stage2.loss.name) == (4, "eval", "bagmar")
    assert (stage2.optim.lr, stage2.schedule.name, stage2.train.batch_size) == (0.1, "cosine", 64)
    assert (stage2.loss.lambda1, stage2.loss.lambda2, stage2.model.weights) == (1.0, 1.0, None)


def test_the_stage2_preset_takes_its_backbone_from_the_command_line(tmp_path: Path):
    given = tmp_path / "stage1" / "best.safetensors"
    settings = load_settings("fashion_mnist_lt_stage2", overrides=[f"model.weights={given}"])
    assert settings.model.weights == given and settings.model.freeze == "backbone"


def test_the_two_stage_preset_is_the_ce_recipe_then_the_stage2_preset():
    first, second = load_settings("fashion_mnist_lt_two_stage").stages()
    assert changed_settings(load_settings("fashion_mnist_lt_ce"), first) == []
    assert second is not None and changed_settings(load_settings("fashion_mnist_lt_stage2"), second) == []


def test_the_ce_preset_is_the_recipe_with_plain_cross_entropy():
    changed = changed_settings(load_settings("fashion_mnist_lt"), load_settings("fashion_mnist_lt_ce"))
    assert changed == [("loss.name", "bagmar", "ce")]


@pytest.mark.slow
@needs_fashion_mnist
def test_stage2_on_real_fashion_mnist_changes_the_classifier_only(cli, tmp_path: Path):
    prepared = cli("prepare", "fashion_mnist", "--imb", "100", "--val-per-class", "10", "--out", tmp_path / "d")
    assert prepared.code == 0, prepared.err
    data = prepared.out.strip()
    common = ["--data", data, "--epochs", "1", "--device", "cpu"]
    stage1 = cli("train", "--preset", "fashion_mnist_lt_ce", "--out", tmp_path / "s1", *common)
    assert stage1.code == 0, stage1.err
    stage1_ckpt = Path(stage1.out.strip())
    stage2 = cli(
        "train",
        "--preset",
        "fashion_mnist_lt_stage2",
        "--out",
        tmp_path / "s2",
        "--set",
        f"model.weights='{stage1_ckpt}'",
        *common,
    )
    assert stage2.code == 0, stage2.err
    before, after = (load_checkpoint(Path(out.strip())).tensors for out in (stage1.out, stage2.out))

    backbone = sorted(key for key in before if key.startswith("model.backbone."))
    assert sorted(key for key in after if key.startswith("model.backbone.")) == backbone
    buffers = [key for key in backbone if key.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert len(buffers) == 3 * 7  # the stem's BatchNorm and two in each of ResNet-8's three blocks
    changed = [key for key in backbone if not torch.equal(before[key], after[key])]
    assert changed == []
    for key in ("model.head.weight", "model.head.bias"):
        assert before[key].shape == after[key].shape and not torch.equal(before[key], after[key])
    assert "val top-1" in stage2.err


@pytest.mark.slow
@needs_fashion_mnist
def test_the_two_stage_preset_runs_both_stages_in_one_command_on_real_fashion_mnist(cli, tmp_path: Path):
    prepared = cli("prepare", "fashion_mnist", "--imb", "100", "--val-per-class", "10", "--out", tmp_path / "d")
    assert prepared.code == 0, prepared.err
    run = tmp_path / "run"
    args = ["--data", prepared.out.strip(), "--epochs", "1", "--set", "stage2.train.epochs=1", "--device", "cpu"]
    outcome = cli("train", "--preset", "fashion_mnist_lt_two_stage", "--out", run, *args)
    assert outcome.code == 0, outcome.err
    assert outcome.out == f"{run / 'stage2' / 'best.safetensors'}\n"
    before = load_checkpoint(run / "stage1" / "best.safetensors").tensors
    after = load_checkpoint(run / "stage2" / "last.safetensors").tensors
    backbone = [key for key in before if key.startswith("model.backbone.")]
    assert backbone and all(torch.equal(before[key], after[key]) for key in backbone)
    assert not torch.equal(before["model.head.weight"], after["model.head.weight"])
