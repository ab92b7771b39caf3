"""Fine-tuning wired into training (issue 23): what trains under `model.peft`, the backbone's own preprocessing,
the class-mean head, the parameter counts, the adapters-only file, and an exact resume with adapters.

timm's tiny `test_vit` (a 160-pixel patch-16 ViT, mean and std 0.5 in its pretrained cfg) starts from random
weights saved as a local weights file, on a generated folder of small JPEGs.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
import timm
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file, save_file
from support.image_trees import write_jpeg

from bagmar_cli.checkpoint import file_sha256, load_adapters, load_checkpoint
from bagmar_cli.cli import main
from bagmar_cli.data import load_manifest
from bagmar_cli.engine.distributed import World
from bagmar_cli.engine.restore import load_weights, model_from_checkpoint
from bagmar_cli.engine.runtime import seed_everything
from bagmar_cli.engine.train.build import build
from bagmar_cli.engine.train.dataset import bind_dataset
from bagmar_cli.engine.train.hooks import Hooks
from bagmar_cli.engine.train.recipe import train
from bagmar_cli.models import build_model
from bagmar_cli.models.adapters import is_adapter
from bagmar_cli.models.finetune import load_adapter_state
from bagmar_cli.settings import load_settings

COUNTS = (6, 4, 2)  # training images per class


def _run_cli(*args: object) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tree")
    for c, n in enumerate(COUNTS):
        for split, count in (("train", n), ("val", 2), ("test", 2)):
            for i in range(count):
                write_jpeg(root / split / f"class{c}" / f"{i}.jpg", seed=c)
    return root


@pytest.fixture(scope="module")
def dataset(tree, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ds") / "ds"
    code, _, err = _run_cli("prepare", "folder", "--root", tree, "--out", out)
    assert code == 0, err
    return out


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """Random test_vit weights as a local file: the "pretrained" base."""
    torch.manual_seed(7)
    backbone = timm.create_model("test_vit", num_classes=0)
    path = tmp_path_factory.mktemp("weights") / "test_vit.safetensors"
    save_file({k: v.contiguous() for k, v in backbone.state_dict().items()}, str(path))
    return path


def _settings(dataset: Path, weights: Path, *sets: str, epochs: int = 1):
    overrides = ["model.backbone=test_vit", f"model.weights={weights}", "model.head=normed", "model.head_scale=16"]
    return load_settings(
        "digits_lt",
        overrides=[*overrides, "data.crop_padding=0", *sets],
        flags={"data.root": dataset, "train.device": "cpu", "train.epochs": epochs, "train.batch_size": 4},
    )


@pytest.fixture(scope="module", params=["lora", "adaptformer"])
def peft_run(request, dataset, weights, tmp_path_factory) -> tuple[str, Path]:
    """One epoch of `train()` under `model.peft`; returns (peft, run directory)."""
    out = tmp_path_factory.mktemp(request.param) / "run"
    train(_settings(dataset, weights, f"model.peft={request.param}", "model.peft_rank=4"), out)
    return request.param, out


def _start(dataset: Path, weights: Path, peft: str):
    """The model as the run built it before its first step (same seed, same base)."""
    settings = _settings(dataset, weights, f"model.peft={peft}", "model.peft_rank=4")
    seed_everything(settings.train.seed)
    return build_model(settings.model, len(COUNTS), 3).state_dict(), settings


def test_under_peft_the_base_weights_are_bit_identical_after_an_epoch_and_the_adapters_changed(
    peft_run, dataset, weights
):
    peft, run = peft_run
    start, _ = _start(dataset, weights, peft)
    trained = load_checkpoint(run / "last.safetensors").section("model")
    assert trained.keys() == start.keys()
    base = [key for key in start if key.startswith("backbone.") and not is_adapter(key)]
    adapters = [key for key in start if is_adapter(key)]
    assert base and adapters
    assert all(torch.equal(trained[key], start[key]) for key in base)
    assert any(not torch.equal(trained[key], start[key]) for key in adapters)
    assert not torch.equal(trained["head.weight"], start["head.weight"])


def test_the_run_records_its_parameter_counts_and_the_backbones_preprocessing(peft_run):
    _, run = peft_run
    meta = load_checkpoint(run / "best.safetensors", tensors=False).meta
    assert meta.parameters is not None and 0 < meta.parameters.trainable < meta.parameters.total / 5
    spec = meta.model
    # test_vit's pretrained cfg: mean and std 0.5, 160 pixels, bicubic (the manifest says ImageNet's, 224)
    assert spec.mean == spec.std == [0.5, 0.5, 0.5] and spec.input_size == [3, 160, 160]
    assert spec.preprocess is not None and spec.preprocess.mean == [0.5, 0.5, 0.5]
    assert (spec.preprocess.crop, spec.preprocess.interpolation) == (160, "bicubic")
    # small images are evaluated whole, as their pad-and-crop trains on them
    assert spec.preprocess.resize == 160


def test_the_adapters_file_is_much_smaller_and_loads_onto_the_same_base(peft_run, weights):
    _, run = peft_run
    tensors, meta = load_adapters(run / "adapters.safetensors")
    full = load_checkpoint(run / "best.safetensors").section("model")
    size = sum(t.numel() for t in tensors.values())
    assert size * 10 < sum(t.numel() for t in full.values())
    assert meta.base_weights == str(weights) and meta.base_weights_sha256 == file_sha256(weights)
    model = build_model(meta.model, meta.num_classes, meta.in_chans)  # the base read from model.weights
    load_adapter_state(model, tensors)
    state = model.state_dict()
    assert all(torch.equal(state[key], full[key]) for key in full)


def test_eval_rebuilds_the_peft_model_alone_and_normalises_with_the_backbones_mean(peft_run, dataset, tmp_path):
    _, run = peft_run
    ckpt = load_weights(run / "best.safetensors")
    model = model_from_checkpoint(ckpt)  # no weights file read, adapters rebuilt
    logits = tmp_path / "logits.safetensors"
    code, _, err = _run_cli(
        "eval", run / "best.safetensors", "--split", "test", "--save-logits", logits, "--device", "cpu"
    )
    assert code == 0, err
    transform = ckpt.meta.model.preprocess.transform()
    lines = (dataset / "test.txt").read_text().splitlines()
    root = load_manifest(dataset).images_dir(dataset)
    images = torch.stack([transform(Image.open(root / line.rsplit(" ", 1)[0]).convert("RGB")) for line in lines])
    with torch.no_grad():
        expected = model(images)
    torch.testing.assert_close(load_file(logits)["logits"], expected, atol=1e-5, rtol=1e-5)


def test_the_class_mean_head_equals_the_hand_computed_means(dataset, weights):
    settings = _settings(dataset, weights, "model.peft=lora", "model.head_init=class_mean")
    settings, root, manifest = bind_dataset(settings)
    job = build(settings, root, manifest, torch.device("cpu"), World())
    preprocess = job.preprocess
    assert preprocess is not None and preprocess.mean == [0.5, 0.5, 0.5]
    features = {c: [] for c in range(len(COUNTS))}
    job.model.eval()
    with torch.no_grad():
        for line in (dataset / "train.txt").read_text().splitlines():
            path, label = line.rsplit(" ", 1)
            image = preprocess.transform()(Image.open(manifest.images_dir(root) / path).convert("RGB"))
            features[int(label)].append(F.normalize(job.model.features(image[None]), dim=1)[0])
    means = torch.stack([torch.stack(rows).mean(0) for rows in features.values()])
    torch.testing.assert_close(job.model.head.weight.detach(), means, atol=1e-5, rtol=1e-5)


def test_a_resume_with_lora_ends_on_the_uninterrupted_weights(dataset, weights, tmp_path):
    settings = _settings(dataset, weights, "model.peft=lora", "model.peft_rank=4", epochs=2)
    train(settings, tmp_path / "whole")

    def stop(record):
        if record.epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(settings, tmp_path / "run", hooks=Hooks(on_epoch_end=stop))
    train(settings, tmp_path / "run", resume=True)
    whole = load_checkpoint(tmp_path / "whole" / "last.safetensors").section("model")
    resumed = load_checkpoint(tmp_path / "run" / "last.safetensors").section("model")
    assert whole.keys() == resumed.keys()
    assert [key for key in whole if not torch.equal(whole[key], resumed[key])] == []


def test_a_second_stage_after_a_lora_stage_continues_its_adapters_on_the_same_base(dataset, weights, tmp_path):
    settings = _settings(dataset, weights, "model.peft=lora", "model.peft_rank=4", "stage2.loss.name=ce")
    train(settings, tmp_path / "run")
    stage1 = load_checkpoint(tmp_path / "run" / "stage1" / "best.safetensors").section("model")
    stage2 = load_checkpoint(tmp_path / "run" / "stage2" / "last.safetensors").section("model")
    assert stage1.keys() == stage2.keys()
    base = [key for key in stage1 if key.startswith("backbone.") and not is_adapter(key)]
    adapters = [key for key in stage1 if is_adapter(key)]
    assert all(torch.equal(stage1[key], stage2[key]) for key in base)
    assert any(not torch.equal(stage1[key], stage2[key]) for key in adapters)  # they went on training
    _, meta = load_adapters(tmp_path / "run" / "stage2" / "adapters.safetensors")
    assert meta.base_weights == str((tmp_path / "run" / "stage1" / "best.safetensors").resolve())


def test_train_on_a_folder_with_lora_and_a_weights_file_through_the_cli(dataset, weights, tmp_path):
    sets = ["model.backbone=test_vit", f"model.weights={weights}", "model.peft=lora", "data.crop_padding=0"]
    args = [arg for item in sets for arg in ("--set", item)]
    code, out, err = _run_cli(
        "train", "--data", dataset, "--preset", "digits_lt", *args, "--epochs", "1", "--batch-size", "4",
        "--device", "cpu", "--out", tmp_path / "run",
    )  # fmt: skip
    assert code == 0, err
    assert out.strip() == str(tmp_path / "run" / "best.safetensors")
    assert "trainable " in err and " M parameters (" in err
    assert (tmp_path / "run" / "adapters.safetensors").is_file()


def test_a_text_head_starts_from_the_manifests_class_names(dataset, weights, tmp_path):
    open_clip = pytest.importorskip("open_clip")
    from tests.models.test_head_init import TINY

    (tmp_path / "bagmar-tiny-train.json").write_text(json.dumps(TINY))
    open_clip.add_model_config(tmp_path)
    torch.manual_seed(0)
    tower = open_clip.create_model("bagmar-tiny-train").eval()
    save_file({k: v.contiguous() for k, v in tower.state_dict().items()}, tmp_path / "tiny.safetensors")
    sets = [
        "model.head_init=text",
        "model.text_model=bagmar-tiny-train",
        f"model.text_weights={tmp_path / 'tiny.safetensors'}",
    ]
    settings, root, manifest = bind_dataset(_settings(dataset, weights, "model.peft=lora", *sets))
    job = build(settings, root, manifest, torch.device("cpu"), World())
    prompts = [f"a photo of a {name}." for name in manifest.classes]
    with torch.no_grad():
        expected = F.normalize(tower.encode_text(open_clip.get_tokenizer("bagmar-tiny-train")(prompts)), dim=1)
    torch.testing.assert_close(job.model.head.weight.detach(), expected)


def test_imagenet_1k_weights_on_imagenet_lt_are_warned_about(dataset, weights, tmp_path, monkeypatch, capsys):
    """test_vit's default tag is r160_in1k: on a dataset whose manifest says imagenet_lt, the run says so."""
    from bagmar_cli.engine.train import recipe

    def as_imagenet_lt(settings):
        settings, root, manifest = bind_dataset(settings)
        return settings, root, manifest.model_copy(update={"dataset": "imagenet_lt"})

    monkeypatch.setattr(recipe, "bind_dataset", as_imagenet_lt)
    train(_settings(dataset, weights, "model.peft=lora"), tmp_path / "run")
    err = " ".join(capsys.readouterr().err.split())
    assert "'test_vit' was trained on ImageNet-1k" in err and "do not compare with the long-tailed literature" in err
