"""The large-scale presets: each validates, holds the values its header and docs/large-scale.md promise in each
stage, and a stage-2-only preset trains exactly stage 2 of its two-stage preset. The CLIP ViT-B/16 presets (after
LIFT) hold LIFT's values, and the slow suite trains each for two steps with the real architecture."""

from __future__ import annotations

from typing import Any

import pytest

from bagmar_cli.data.sources.benchmarks import BENCHMARKS
from bagmar_cli.settings import Settings, changed_settings, flatten_settings, load_settings, preset_names

BACKBONES = {"imagenet_lt": ("resnext50", "resnet50"), "inat2018": ("resnet50",), "places_lt": ("resnet152",)}
LARGE = sorted(
    [*BACKBONES]
    + [
        f"{bench}_{backbone}_{loss}{suffix}"
        for bench, backbones in BACKBONES.items()
        for backbone in backbones
        for loss in ("bagmar", "ce")
        for suffix in ("", "_stage2")
    ]
)

# The authors' large-scale augmentation (issue "Image files on disk"), the same in every preset and stage.
AUGMENT = {
    "data.random_crop": True,
    "data.crop_scale_min": 0.08,
    "data.hflip": True,
    "data.color_jitter": 0.4,
    "data.randaugment": "rand-n2-m10-mstd0.5",
    "data.crop": 224,
    "data.autoaugment": False,
    "data.cutout": 0,
    "data.val_per_class": 0,  # the benchmarks' official val lists; prepare refuses --val-per-class for them
    "model.head": "linear",
    "optim.momentum": 0.9,
    "optim.lr_scaling": "keep",
    "schedule.name": "cosine",
    "schedule.warmup_epochs": 0,
    "schedule.min_lr": 0.0,
}
CLASSIFIER_RETRAINING = {"model.freeze": "backbone", "data.sampler": "class_aware", "data.samples_per_class": 4}
BAGMAR = {"loss.name": "bagmar", "loss.lambda1": 1.0, "loss.lambda2": 1.0, "loss.form": "paper"}

# (stage 1, stage 2) of each BaGMar two-stage preset, as its header and docs/large-scale.md's table state them.
PROMISED: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "imagenet_lt_resnext50_bagmar": (
        {
            "model.backbone": "resnext50_32x4d", "model.pretrained": False, "model.freeze": "none",
            "loss.name": "ce", "data.sampler": "instance", "train.batch_size": 512, "optim.lr_batch": 512,
            "train.epochs": 90, "optim.lr": 0.2, "optim.weight_decay": 5e-4,
        },
        {**CLASSIFIER_RETRAINING, **BAGMAR, "train.batch_size": 512, "train.epochs": 10, "optim.lr": 0.12,
         "optim.weight_decay": 5e-4},
    ),
    "inat2018_resnet50_bagmar": (
        {
            "model.backbone": "resnet50", "model.pretrained": False, "model.freeze": "none", "loss.name": "ce",
            "data.sampler": "instance", "train.batch_size": 512, "optim.lr_batch": 512, "train.epochs": 90,
            "optim.lr": 0.2, "optim.weight_decay": 1e-4,
        },
        {**CLASSIFIER_RETRAINING, **BAGMAR, "train.batch_size": 512, "train.epochs": 30, "optim.lr": 0.2,
         "optim.weight_decay": 1e-4},
    ),
    "places_lt_resnet152_bagmar": (
        {
            "model.backbone": "resnet152.tv_in1k", "model.pretrained": True, "model.freeze": "all_but_last_stage",
            "loss.name": "ce", "data.sampler": "instance", "train.batch_size": 256, "optim.lr_batch": 256,
            "train.epochs": 30, "optim.lr": 0.01, "optim.head_lr": 0.1, "optim.weight_decay": 5e-4,
        },
        {**CLASSIFIER_RETRAINING, **BAGMAR, "train.batch_size": 256, "train.epochs": 10, "optim.head_lr": 0.1,
         "optim.weight_decay": 5e-4},
    ),
}  # fmt: skip


def stages(name: str) -> tuple[Settings, Settings | None]:
    """A preset's stage 1 and stage 2 as the trainer runs them (None for a one-stage preset)."""
    return load_settings(preset=name).stages()


def flat(settings: Settings) -> dict[str, Any]:
    return flatten_settings(settings.model_dump(mode="json"))


CLIP = sorted(f"{bench}_clip_vitb16" for bench in BACKBONES)
# LIFT's recipe (Shi et al., ICML 2024: configs/model/clip_vit_b16_peft.yaml), as the CLIP presets' headers state it
LIFT = {
    "model.backbone": "vit_base_patch16_clip_224.openai", "model.pretrained": True, "model.peft": "adaptformer",
    "model.head": "normed", "model.head_scale": 30.0, "model.head_init": "text", "model.text_model": "ViT-B-16",
    "model.text_pretrained": "openai", "optim.name": "sgd", "optim.lr": 0.01, "optim.lr_batch": 128,
    "optim.momentum": 0.9, "optim.weight_decay": 5e-4, "schedule.name": "cosine", "train.batch_size": 128,
    "data.random_crop": True, "data.crop_scale_min": 0.08, "data.hflip": True, "data.crop": 224,
    "eval.tta": "five_crop", "loss.name": "bagmar", "data.sampler": "instance",
}  # fmt: skip


def test_every_large_scale_preset_ships_and_each_benchmark_names_its_default():
    assert sorted(name for name in preset_names() if name.startswith(tuple(BACKBONES))) == sorted(LARGE + CLIP)
    assert {bench.default_preset for bench in BENCHMARKS.values()} == set(BACKBONES)


@pytest.mark.parametrize("name", LARGE)
def test_every_large_scale_preset_validates_with_the_authors_augmentation_in_each_stage(name):
    settings = load_settings(preset=name)
    assert settings.description
    first, second = stages(name)
    assert (second is None) == name.endswith("_stage2"), "a _stage2 preset is one stage; the others are two"
    for stage in (first, second) if second is not None else (first,):
        assert flat(stage).items() >= AUGMENT.items()
        # the benchmark `bagmar prepare` writes to $BAGMAR_DATA_DIR/<name> by default; --data DIR points elsewhere
        assert stage.data.dataset == name.split("_resne")[0].removesuffix("_stage2") and stage.data.root is None


@pytest.mark.parametrize("name", sorted(PROMISED))
def test_the_two_stages_hold_the_values_the_docs_promise(name):
    first, second = stages(name)
    promised_first, promised_second = PROMISED[name]
    assert second is not None
    assert {key: flat(first)[key] for key in promised_first} == promised_first
    assert {key: flat(second)[key] for key in promised_second} == promised_second
    # stage 2 changes only what the protocol changes (and starts from stage 1's backbone, never the hub's):
    # the backbone, data, augmentation and the rest of the recipe carry over
    protocol = {"model.freeze", "model.pretrained", "data.sampler", "data.samples_per_class", "train.epochs"}
    changed = {key for key, _, _ in _changes(first, second)}
    assert changed <= protocol | {"optim.lr"} | {key for key in flat(second) if key.startswith("loss.")}


@pytest.mark.parametrize(
    "name", [n for n in LARGE if n.endswith(("_bagmar", "_ce")) and n.startswith(tuple(BACKBONES))]
)
def test_a_variant_differs_from_its_bagmar_preset_only_in_its_name_backbone_or_stage_2_loss(name):
    bench = next(b for b in BACKBONES if name.startswith(b))
    reference = f"{bench}_{BACKBONES[bench][0]}_bagmar"
    (first, second), (ref_first, ref_second) = stages(name), stages(reference)
    assert second is not None and ref_second is not None
    allowed = {"model.backbone"} | ({"loss.name"} if name.endswith("_ce") else set())
    assert {key for key, _, _ in _changes(ref_first, first)} <= {"model.backbone"}
    assert {key for key, _, _ in _changes(ref_second, second)} <= allowed
    assert second.loss.name == ("ce" if name.endswith("_ce") else "bagmar")


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_the_default_presets_are_the_bagmar_protocol(name):
    bagmar = f"{name}_{BACKBONES[name][0]}_bagmar"
    assert _same_but_description(stages(name), stages(bagmar))


@pytest.mark.parametrize("name", [n for n in LARGE if n.endswith("_stage2")])
def test_a_stage_2_only_preset_trains_exactly_stage_2_of_its_two_stage_preset(name):
    alone, none = stages(name)
    _, second = stages(name.removesuffix("_stage2"))
    assert none is None and second is not None
    assert not alone.model.pretrained and alone.model.weights is None  # the backbone comes from --set model.weights
    assert changed_settings(second, alone) == []


def _changes(a: Settings, b: Settings) -> list[tuple[str, Any, Any]]:
    return changed_settings(a, b)


def _same_but_description(a: tuple[Settings, Settings | None], b: tuple[Settings, Settings | None]) -> bool:
    return all(
        (x is None and y is None) or (x is not None and y is not None and _changes(x, y) == [])
        for x, y in zip(a, b, strict=True)
    )


@pytest.mark.parametrize("name", CLIP)
def test_the_clip_presets_hold_lifts_values(name):
    settings = load_settings(preset=name)
    first, second = settings.stages()
    assert second is None and settings.description
    assert {key: flat(first)[key] for key in LIFT} == LIFT
    assert first.data.dataset == name.removesuffix("_clip_vitb16") and first.data.root is None
    assert first.train.epochs == (20 if name.startswith("inat2018") else 10)  # LIFT: 20 for iNaturalist


def test_the_folder_recipe_fine_tunes_a_pretrained_backbone():
    settings = load_settings(preset="finetune")
    model = settings.model
    assert model.pretrained and model.peft in ("lora", "adaptformer") and model.head == "normed"
    assert settings.loss.name == "bagmar" and settings.data.dataset is None and settings.stage2 is None


@pytest.mark.slow
@pytest.mark.parametrize("name", CLIP)
def test_each_clip_preset_trains_two_steps_with_the_real_architecture(name, tmp_path):
    """CLIP ViT-B/16 with AdaptFormer and random weights (the hub is offline here), on a tree in the benchmark's
    official list format, batch 2. The text head is left random: its open_clip weights come from the hub too."""
    import torch
    from support.image_trees import benchmark_jpeg_tree

    from bagmar_cli.data.sources.benchmarks import prepare_benchmark
    from bagmar_cli.data.splits import open_split
    from bagmar_cli.engine import distributed
    from bagmar_cli.engine.train.build import batch_source, build, train_transform_of
    from bagmar_cli.engine.train.dataset import bind_dataset
    from bagmar_cli.engine.train.step import TrainStep
    from bagmar_cli.models.finetune import parameter_counts

    bench = name.removesuffix("_clip_vitb16")
    benchmark_jpeg_tree(bench, tmp_path / "root", tmp_path / "splits", train_per_class=(1,), eval_every=1000)
    data = prepare_benchmark(bench, root=tmp_path / "root", splits_dir=tmp_path / "splits", out=tmp_path / "ds")
    overrides = ["model.pretrained=false", 'model.head_init="random"', "data.num_workers=0"]
    flags = {"data.root": data, "train.batch_size": 2, "train.device": "cpu"}
    settings, root, manifest = bind_dataset(load_settings(preset=name, overrides=overrides, flags=flags))
    job = build(settings, root, manifest, torch.device("cpu"), distributed.World())
    _, total = parameter_counts(job.model)  # what trains is engine/train's (tests/engine/train)
    assert 80e6 < total < 100e6  # ViT-B/16 with its adapters
    before = {k: v.clone() for k, v in job.model.state_dict().items() if "adaptformer.up_proj.weight" in k}
    batches = batch_source(job, open_split(root, "train", train_transform_of(job)))
    step = TrainStep(job.model, job.loss_fn, job.optimizer, settings.train, job.device, scheduler=job.scheduler)
    losses = [float(step(images, labels)) for (images, labels), _ in zip(batches.epoch(0), range(2), strict=False)]
    assert len(losses) == 2 and all(torch.isfinite(torch.tensor(losses)))
    after = job.model.state_dict()
    assert before and any(not torch.equal(after[k], v) for k, v in before.items()), "the adapters learn"
