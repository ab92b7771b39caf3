"""The training recipe: bind the settings to their dataset, then for each stage build a job and fit it.

Settings with a [stage2] table train two stages (Kang et al.'s decoupling): stage 1 trains the network into
RUN/stage1/, stage 2 re-trains the classifier into RUN/stage2/, each a run directory of its own; RUN/config.toml
records both. Stage 2 starts from the backbone of stage 1's selected checkpoint (through `model.weights`: its
classifier starts fresh; under `model.peft`, a stage-1-only setting, with stage 1's adapters, which train on), or
from the file [stage2] names, in which case stage 1 does not run. A resume
continues whichever stage was cut short (resume.py holds what a resume may change).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

from bagmar_cli.console import info, warn
from bagmar_cli.data import Manifest
from bagmar_cli.engine import distributed
from bagmar_cli.engine.runtime import resolve_device
from bagmar_cli.engine.train.build import build, check_frozen_start, is_image_files, steps_per_epoch
from bagmar_cli.engine.train.dataset import bind_dataset
from bagmar_cli.engine.train.hooks import Hooks
from bagmar_cli.engine.train.inputs import run_inputs
from bagmar_cli.engine.train.loop import fit
from bagmar_cli.engine.train.resume import check_resume, continues, finished
from bagmar_cli.engine.train.rundir import STAGES, RunDir
from bagmar_cli.files import atomic_write
from bagmar_cli.models.classifier import check_input_size
from bagmar_cli.models.preprocess import saw_imagenet_test_classes
from bagmar_cli.settings import Settings


@dataclass(frozen=True)
class _Place:
    """Where every stage of one start trains: the dataset (its manifest read once), device, processes, hooks."""

    root: Path
    manifest: Manifest
    device: torch.device
    world: distributed.World
    hooks: Hooks


def train(
    settings: Settings, out: Path, *, resume: bool = False, overwrite: bool = False, hooks: Hooks | None = None
) -> Path | None:
    """Run the recipe into run directory `out`; returns the selected checkpoint (None on ranks other than 0).

    Settings with a [stage2] table train two stages under `out` and return stage 2's. A resume refuses settings
    that would change the run recorded in `out` (see `resume.check_resume`). `hooks`: seams into the epoch loop.
    """
    settings, root, manifest = bind_dataset(settings)
    if resume:
        check_resume(out, settings, manifest)
    first, second = settings.stages()
    for stage in (first, second):
        if stage is not None:  # before anything is written: a backbone that cannot take the images is refused
            # stage 2 after stage 1 sees what stage 1's backbone saw (its checkpoint records it)
            seen = (
                stage.model_copy(update={"model": first.model})
                if stage is second and not settings.skips_stage1
                else stage
            )
            check_input_size(stage.model, run_inputs(seen, manifest).size, image_files=is_image_files(manifest))
    device = resolve_device(settings.train.device)
    world = distributed.init_world(device)
    if world.size > 1 and device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
    place = _Place(root, manifest, device, world, hooks or Hooks())
    try:
        if second is None:
            return _train_stage(first, out, place, resume=resume, overwrite=overwrite)
        later = second.train.epochs * steps_per_epoch(second, manifest, world)  # stage 1's ETA counts stage 2's
        selected, start = None, None
        with _two_stage_dir(settings, out, world, resume=resume, overwrite=overwrite):
            for number, planned in enumerate((first, second), start=1):
                folder, is_first = out / STAGES[number - 1], number == 1
                if is_first and settings.skips_stage1:
                    continue
                stage = planned if start is None else _from_backbone(planned, start)
                if not (is_first and resume and finished(folder, stage.train.epochs)):
                    _announce(world, number, folder, None if is_first else stage.model.weights)
                    cont = continues(folder, resume)  # else a fresh start, replacing what a cut-short start left
                    selected = _train_stage(
                        stage, folder, place, resume=cont, overwrite=not cont, later=later if is_first else 0
                    )
                if is_first:
                    distributed.barrier(world)  # stage 1's checkpoint is written before any rank reads it
                    start = RunDir.selected_of(folder).resolve()
        return selected
    finally:
        distributed.shutdown(world)


def _train_stage(
    settings: Settings, out: Path, place: _Place, *, resume: bool, overwrite: bool, later: int = 0
) -> Path | None:
    """One stage: build its job and fit it into run directory `out` (rank 0 owns it; the other ranks only train);
    `later`: the optimiser steps of the stages after it."""
    if not resume:
        check_frozen_start(settings.model, place.world)
        if place.world.is_main and saw_imagenet_test_classes(settings.model, place.manifest.dataset):
            warn(
                f"model.backbone {settings.model.backbone!r} was trained on ImageNet-1k, every class of ImageNet-LT's "
                "test images at full size: this run's numbers do not compare with the long-tailed literature's"
            )
    run = RunDir(out, overwrite=overwrite, resume=resume) if place.world.is_main else None
    with run if run is not None else nullcontext():
        if run is not None:
            info(f"run directory: {run.path}")
        job = build(settings, place.root, place.manifest, place.device, place.world, resuming=resume)
        job.later_steps = later
        return fit(job, run, RunDir.last_of(out) if resume else None, place.hooks)


@contextmanager
def _two_stage_dir(
    settings: Settings, out: Path, world: distributed.World, *, resume: bool, overwrite: bool
) -> Iterator[None]:
    """Rank 0 holds the lock on the two-stage run directory `out` while its stages train in their own."""
    if not world.is_main:
        yield
        return
    with RunDir(out, overwrite=overwrite, resume=resume) as run:
        plan = (
            f"stage 2 only, into {out / STAGES[1]}: [stage2] names its backbone"
            if settings.skips_stage1
            else f"two stages: {out / STAGES[0]}, then {out / STAGES[1]}"
        )
        info(f"run directory: {run.path} ({plan})")
        if not resume:
            atomic_write(run.config, settings.to_toml().encode())
        yield


def _from_backbone(stage: Settings, start: Path) -> Settings:
    """Stage 2's settings starting from the backbone of `start` (stage 1's selected checkpoint)."""
    return stage.model_copy(update={"model": stage.model.model_copy(update={"weights": start})})


def _announce(world: distributed.World, stage: int, folder: Path, start: Path | None) -> None:
    if world.is_main:
        source = f", from the backbone of {start}" if start is not None else ""
        info(f"stage {stage} of 2: {folder}{source}")
