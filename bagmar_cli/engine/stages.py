"""Two-stage training (Kang et al.'s decoupling): stage 1 trains the network, stage 2 re-trains the classifier.

A run whose settings hold a [stage2] table trains stage 1 into RUN/stage1/ and then stage 2 into RUN/stage2/,
each a run directory of its own; RUN/config.toml records both. Stage 2 starts from the backbone of stage 1's
selected checkpoint (through `model.weights`: its classifier starts fresh), or from the file [stage2] names,
in which case stage 1 does not run. A resume continues whichever stage was cut short.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

from bagmar_cli.checkpoint import load_checkpoint
from bagmar_cli.console import info
from bagmar_cli.engine import distributed
from bagmar_cli.engine.rundir import STAGES, RunDir
from bagmar_cli.files import atomic_write
from bagmar_cli.settings import Settings

# trains one stage: (its settings, its run directory, resume, overwrite) -> its selected checkpoint (rank 0)
StageRunner = Callable[[Settings, Path, bool, bool], Path | None]


def train_stages(
    settings: Settings, out: Path, world: distributed.World, run_stage: StageRunner, *, resume: bool, overwrite: bool
) -> Path | None:
    """Run the stages of `settings` under run directory `out`; stage 2's selected checkpoint (None off rank 0)."""
    first, second = settings.stages()
    assert second is not None, "train_stages runs two-stage settings"
    run = RunDir(out, overwrite=overwrite, resume=resume) if world.is_main else None
    with run if run is not None else nullcontext():  # rank 0 holds the run directory's lock
        if run is not None:
            plan = (
                f"stage 2 only, into {out / STAGES[1]}: [stage2] names its backbone"
                if settings.skips_stage1
                else f"two stages: {out / STAGES[0]}, then {out / STAGES[1]}"
            )
            info(f"run directory: {run.path} ({plan})")
            if not resume:
                atomic_write(run.config, settings.to_toml().encode())
        if not settings.skips_stage1:
            folder = out / STAGES[0]
            if not (resume and _finished(folder, first.train.epochs)):  # an --overwrite's old stage 1 is going
                _announce(world, 1, folder)
                _run(run_stage, first, folder, resume)
            distributed.barrier(world)  # stage 1's checkpoint is written before any rank reads it
            start = RunDir.selected_of(folder).resolve()
            second = second.model_copy(update={"model": second.model.model_copy(update={"weights": start})})
        _announce(world, 2, out / STAGES[1], second.model.weights)
        return _run(run_stage, second, out / STAGES[1], resume)


def _run(run_stage: StageRunner, settings: Settings, folder: Path, resume: bool) -> Path | None:
    """One stage: continued from its last checkpoint on a resume that has one, else started afresh (replacing
    what a stage cut short before its first epoch left; the run directory above is this run's)."""
    continues = resume and RunDir.last_of(folder).is_file()
    return run_stage(settings, folder, continues, not continues)


def _finished(folder: Path, epochs: int) -> bool:
    """True when stage run directory `folder` holds its last epoch's checkpoint."""
    last = RunDir.last_of(folder)
    return last.is_file() and load_checkpoint(last, tensors=False).meta.epoch == epochs


def _announce(world: distributed.World, stage: int, folder: Path, start: Path | None = None) -> None:
    if world.is_main:
        source = f", from the backbone of {start}" if start is not None else ""
        info(f"stage {stage} of 2: {folder}{source}")
