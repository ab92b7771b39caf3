"""`bagmar prepare DATASET`: write a long-tailed dataset directory (or, for image files, its lists); prints its path.

Which options each source takes is declared by the source (data/sources/options.py); a refusal names the option,
shown here as its flag.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bagmar_cli.cli.app import app
from bagmar_cli.console import result


@app.command("prepare")
def prepare_command(
    dataset: Annotated[
        str,
        typer.Argument(help="cifar10, cifar100, digits, fashion_mnist; imagenet_lt, inat2018, places_lt; folder."),
    ],
    imb: Annotated[
        float | None,
        typer.Option("--imb", help="Imbalance factor n_max / n_min (>= 1); default 100, for folder: none drawn."),
    ] = None,
    profile: Annotated[str, typer.Option("--profile", help="Long-tail profile: exp or step.")] = "exp",
    seed: Annotated[int, typer.Option("--seed", help="Seed of which images are kept.")] = 0,
    subset: Annotated[
        str,
        typer.Option(
            "--subset",
            help="cifar10/cifar100: bagmar (its own draw) or cao2019 (exactly the images of Cao et al.'s "
            "LDAM-DRW imbalance_cifar.py; --seed is its rand_number).",
        ),
    ] = "bagmar",
    val_per_class: Annotated[
        int, typer.Option("--val-per-class", help="Hold out N images per class as a val split.")
    ] = 0,
    val_fraction: Annotated[
        float | None,
        typer.Option("--val-fraction", help="folder, flat ROOT/<class>/*: share of each class for val (0.1)."),
    ] = None,
    test_fraction: Annotated[
        float | None,
        typer.Option("--test-fraction", help="folder, flat ROOT/<class>/*: share of each class for test (0.2)."),
    ] = None,
    measure_stats: Annotated[
        bool, typer.Option("--measure-stats", help="folder: measure mean/std on the training images (else ImageNet's).")
    ] = False,
    image_size: Annotated[
        int | None,
        typer.Option("--image-size", help="folder: side N of the square the network sees (manifest [3, N, N]; 224)."),
    ] = None,
    eval_resize: Annotated[
        int | None,
        typer.Option(
            "--eval-resize",
            help="folder: evaluation resizes the shorter side to N (image size * 256/224; small images: image size).",
        ),
    ] = None,
    source: Annotated[Path | None, typer.Option("--source", help="Official archive or folder (else download).")] = None,
    root: Annotated[
        Path | None, typer.Option("--root", help="Image folder (imagenet_lt, inat2018, places_lt, folder).")
    ] = None,
    splits: Annotated[
        Path | None, typer.Option("--splits", help="Folder holding the official split lists (else download).")
    ] = None,
    no_verify: Annotated[
        bool, typer.Option("--no-verify", help="Skip checking that every listed image exists.")
    ] = False,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output directory.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing dataset directory.")] = False,
) -> None:
    """Prepare a long-tailed training split (and the untouched test split), or the split lists of image files."""
    from bagmar_cli.data import PrepareOptions, prepare_source
    from bagmar_cli.settings import validate

    checked_imb = 100.0 if imb is None else imb
    validate(
        {"data": {"imb": checked_imb, "profile": profile, "val_per_class": val_per_class}, "train": {"seed": seed}}
    )
    options = PrepareOptions(
        imb=imb,
        profile=profile,
        seed=seed,
        val_per_class=val_per_class,
        subset=subset,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        measure_stats=measure_stats,
        source=source,
        root=root,
        splits=splits,
        image_size=image_size,
        eval_resize=eval_resize,
        verify=not no_verify,
        out=out,
        overwrite=overwrite,
    )
    result(str(prepare_source(dataset, options)))
