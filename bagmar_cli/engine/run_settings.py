"""The settings a run trains with: bound to the dataset it reads, recorded in its config.toml, kept on a resume."""

from __future__ import annotations

import shlex
from pathlib import Path

from bagmar_cli.checkpoint import load_checkpoint
from bagmar_cli.data import Manifest, default_data_dir, get_dataset, load_manifest
from bagmar_cli.data.sources.benchmarks import benchmark_names
from bagmar_cli.data.store.paths import data_root
from bagmar_cli.engine.rundir import STAGES, RunDir
from bagmar_cli.errors import DatasetError, SettingError, TrainingError
from bagmar_cli.settings import (
    RESUMABLE,
    DataSettings,
    Settings,
    changed_settings,
    flatten_settings,
    read_settings_file,
)

# Set from the manifest by bind_dataset; a checkpoint of an older bagmar may hold the unbound values.
DATASET_KEYS = ("data.root", "data.dataset", "data.imb", "data.profile", "data.val_per_class")
# Where stage 2's backbone comes from: set by the trainer (stage 1's checkpoint), so no config.toml records it.
STAGE2_SOURCE = ("model.weights", "model.pretrained")


def resolve_data_root(data: DataSettings) -> Path:
    """`data.root`, or the default directory `bagmar prepare` writes for `data.dataset` (at `data.imb` for the
    in-memory datasets; a benchmark read from image files has one, $BAGMAR_DATA_DIR/<name>)."""
    if data.root is not None:
        return data.root
    if data.dataset is None:
        raise SettingError("no dataset: pass --data DIR (a directory written by `bagmar prepare`)")
    if data.dataset in benchmark_names():
        return data_root() / data.dataset
    get_dataset(data.dataset)  # an unknown name is a usage error, not a missing directory
    return default_data_dir(data.dataset, data.imb, data.profile)


def bind_dataset(settings: Settings) -> tuple[Settings, Path, Manifest]:
    """The settings with `data` describing the dataset actually read: its absolute root and the manifest's
    dataset, imb, profile and val_per_class (a preset's `imb = 100` must not be recorded for an imb-10 set)."""
    given = resolve_data_root(settings.data)
    if settings.data.root is None and not given.exists():
        raise DatasetError(
            f"no prepared dataset at {given}, where `bagmar prepare {settings.data.dataset}` writes it: prepare it "
            "first (`bagmar prepare --help`), or pass --data DIR"
        )
    manifest = load_manifest(given)  # errors name the directory as the user gave it
    root = Path(given).resolve()
    data = settings.data.model_copy(
        update={
            "root": root,
            "dataset": manifest.dataset,
            "imb": manifest.imb,
            "profile": manifest.profile,
            "val_per_class": manifest.val_per_class,
        }
    )
    return settings.model_copy(update={"data": data}), root, manifest


def recorded_settings(out: Path) -> Settings:
    """The settings a run directory recorded when its run started (its config.toml)."""
    run = RunDir.config_of(out)
    if not RunDir.resumable(out):
        raise SettingError(f"--resume: {RunDir.last_of(out)} not found, nothing to resume")
    if not run.is_file():
        raise SettingError(f"--resume: {run} not found; the run's settings are unknown, so it cannot be continued")
    return read_settings_file(run, "run settings")


def check_resume(out: Path, settings: Settings) -> None:
    """SettingError naming the first setting in which `settings` would change the run recorded in `out`."""
    recorded, _, _ = bind_dataset(recorded_settings(out))
    first, second = recorded.stages()
    if second is None:
        _check_trained_with(out, recorded)
    else:  # each stage's checkpoint against its stage's settings; stage 2's backbone source is the trainer's
        _check_trained_with(out / STAGES[0], first, config=RunDir.config_of(out))
        _check_trained_with(out / STAGES[1], second, config=RunDir.config_of(out), also=STAGE2_SOURCE)
    for key, old, new in changed_settings(recorded, settings):
        if key not in RESUMABLE:
            raise SettingError(
                f"--resume continues the run recorded in {RunDir.config_of(out)}: {key} = {new!r} would change it "
                f"(recorded {old!r}); only {', '.join(RESUMABLE[:-1])} and {RESUMABLE[-1]} may differ on a resume"
            )


def _check_trained_with(
    out: Path, recorded: Settings, *, config: Path | None = None, also: tuple[str, ...] = ()
) -> None:
    """TrainingError when `config` (out's config.toml) no longer holds the settings out's last.safetensors was
    trained with; a run directory without one has nothing to check. `also`: more keys that may differ."""
    last = RunDir.last_of(out)
    if not last.is_file():
        return
    config = config or RunDir.config_of(out)
    trained = load_checkpoint(last, tensors=False).meta.settings
    then, now = flatten_settings(trained.model_dump(mode="json")), flatten_settings(recorded.model_dump(mode="json"))
    for key in sorted(then.keys() & now.keys()):
        if key not in RESUMABLE + DATASET_KEYS + also and then[key] != now[key]:
            raise TrainingError(
                f"{config} says {key} = {now[key]!r} but {last} was trained with {then[key]!r}: "
                "restore config.toml, or start a new run"
            )


def resume_command(out: Path) -> str:
    """The command line that continues the run in `out`."""
    return f"bagmar train --out {shlex.quote(str(out))} --resume"
