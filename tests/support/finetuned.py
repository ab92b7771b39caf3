"""Small fine-tuned runs for the eval, export and predict tests: timm's tiny test_vit (160x160 only) with LoRA or
AdaptFormer on a generated folder of JPEGs, trained one epoch through the public `train()`."""

from __future__ import annotations

from pathlib import Path

from support.image_trees import write_jpeg

from bagmar_cli.data.sources.folder import prepare_folder
from bagmar_cli.engine.train.recipe import train
from bagmar_cli.settings import load_settings

CLASSES = (6, 4, 3)  # training images per class; 2 val and 2 test images each


def folder_dataset(work: Path) -> Path:
    """ROOT/{train,val,test}/<class>/*.jpg prepared as a `prepare folder` dataset; returns its directory."""
    root = work / "tree"
    for c, n in enumerate(CLASSES):
        for split, count in (("train", n), ("val", 2), ("test", 2)):
            for i in range(count):
                write_jpeg(root / split / f"class{c}" / f"{i}.jpg", seed=c * 11 + i, size=(48, 40))
    return prepare_folder(root=root, image_size=160, out=work / "ds")


def finetuned_run(data: Path, out: Path, peft: str, *extra: str) -> Path:
    """One epoch of test_vit with `peft` on `data` (cosine head, random weights); returns best.safetensors."""
    overrides = [
        "model.backbone=test_vit",
        f"model.peft={peft}",
        "model.peft_rank=4",
        'model.head="normed"',
        "model.head_scale=16.0",
        "data.crop=160",
        "data.num_workers=0",
        "data.autoaugment=false",
        "data.cutout=0",
        *extra,
    ]
    flags = {"data.root": data, "train.epochs": 1, "train.batch_size": 8, "train.device": "cpu"}
    checkpoint = train(load_settings("digits_lt", overrides=overrides, flags=flags), out)
    assert checkpoint is not None
    return checkpoint
