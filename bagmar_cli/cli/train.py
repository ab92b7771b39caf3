"""`bagmar train`: run a recipe; prints the selected checkpoint's path (and nothing else) on stdout."""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from bagmar_cli.cli import options
from bagmar_cli.cli.app import app
from bagmar_cli.cli.fields import SETTING_FLAGS
from bagmar_cli.console import result
from bagmar_cli.errors import Interrupted, SettingError


@app.command("train")
def train_command(
    preset: options.Preset = None,
    config: options.Config = None,
    data: options.Data = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Run directory (default runs/<preset>-<time>).")
    ] = None,
    overrides: options.Set = None,
    epochs: Annotated[int | None, typer.Option("--epochs", help="Training epochs.")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="Global batch size.")] = None,
    device: options.Device = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed for torch, numpy and python.")] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue the run in --out with its recorded settings (only --device and workers may differ).",
        ),
    ] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace the run already in --out.")] = False,
    stage1: Annotated[
        Path | None,
        typer.Option(
            "--stage1",
            help="Two-stage presets: skip stage 1 and start stage 2 from this file's backbone "
            "(a bagmar checkpoint, or a timm state dict in safetensors).",
        ),
    ] = None,
    nproc_per_node: Annotated[
        int | None,
        typer.Option("--nproc-per-node", min=1, help="Start torchrun with N processes on this machine (one per GPU)."),
    ] = None,
) -> int | None:
    """Train a model; the path of best.safetensors (best validation top-1) is the only line on stdout."""
    from bagmar_cli.engine.train.recipe import train
    from bagmar_cli.engine.train.resume import recorded_settings
    from bagmar_cli.engine.train.rundir import RunDir
    from bagmar_cli.settings import load_settings

    if resume and out is None:
        raise SettingError("--resume needs --out RUN_DIR: the run directory to continue")
    if resume and overwrite:
        raise SettingError("--resume continues the run in --out and --overwrite replaces it: pass one of them")
    flags = {
        "data.root": data,
        "train.epochs": epochs,
        "train.batch_size": batch_size,
        "train.device": device,
        "train.seed": seed,
    }
    if stage1 is not None:
        flags["stage2.model.weights"] = str(stage1.resolve())
    if resume and out is not None:  # the run's own settings, under whatever the command line repeats or changes
        settings = load_settings(preset, config, overrides, flags, base=recorded_settings(out))
    else:
        default = None if preset else _default_preset(data)
        settings = load_settings(preset, config, overrides, flags, default_preset=default)
    only_stage1_weights = {"model": {"weights": flags.get("stage2.model.weights")}}
    if stage1 is not None and settings.stage2 is not None and settings.stage2.changes() == only_stage1_weights:
        raise SettingError(
            "--stage1 skips the first of two stages, but these settings train one stage ([stage2] unset)"
        )
    run_dir = out or Path("runs") / f"{Path(preset or 'run').stem}-{datetime.now():%Y%m%d-%H%M%S}"
    if nproc_per_node is not None:
        from bagmar_cli.engine import distributed

        if distributed.under_torchrun():
            raise SettingError("--nproc-per-node starts torchrun; under torchrun, leave it out")
        args = _train_args(preset, config, overrides, flags, run_dir, resume=resume, overwrite=overwrite)
        return distributed.launch(nproc_per_node, args)
    try:
        checkpoint = train(settings, run_dir, resume=resume, overwrite=overwrite)
    except KeyboardInterrupt:
        if RunDir.resumable(run_dir):
            raise Interrupted(
                f"interrupted; the last completed checkpoint is kept: {resume_command(run_dir)}"
            ) from None
        raise Interrupted(
            "interrupted before the first epoch completed, so there is no checkpoint to resume; "
            "start again with the same command"
        ) from None
    if checkpoint is not None:  # None on the other ranks of a torchrun job
        result(str(checkpoint))
    return None


def resume_command(out: Path) -> str:
    """The command line that continues the run in `out`."""
    return f"bagmar train --out {shlex.quote(str(out))} --resume"


def _train_args(
    preset: str | None,
    config: Path | None,
    overrides: list[str] | None,
    flags: Mapping[str, object],
    out: Path,
    *,
    resume: bool,
    overwrite: bool,
) -> list[str]:
    """This command line again (for each torchrun process), with the run directory fixed so every rank shares it."""
    args = ["train", "--out", str(out)]
    args += ["--preset", preset] if preset else []
    args += ["--config", str(config)] if config else []
    for item in overrides or []:
        args += ["--set", item]
    for key, value in flags.items():
        args += [SETTING_FLAGS[key], str(value)] if value is not None else []
    return args + (["--resume"] if resume else []) + (["--overwrite"] if overwrite else [])


# presets that manifests of earlier bagmars name, by the preset that is now their recipe
RENAMED_PRESETS = {"folder": "finetune"}  # `prepare folder` named a recipe before one shipped


def _default_preset(data: Path | None) -> str | None:
    """The default preset of the dataset named in the manifest under --data."""
    if data is None:
        return None
    from bagmar_cli.data import load_manifest
    from bagmar_cli.settings import preset_names

    manifest = load_manifest(data)
    name = RENAMED_PRESETS.get(manifest.default_preset, manifest.default_preset)
    if name not in preset_names():
        raise SettingError(
            f"dataset {data} ({manifest.dataset}) names the preset {name!r}, which this bagmar "
            "does not ship: pass --preset NAME (`bagmar presets` lists the shipped ones)"
        )
    return name
