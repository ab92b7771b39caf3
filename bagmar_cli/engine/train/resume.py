"""Resuming a run: what a training checkpoint holds beyond the model, putting a job back where one left it, and
the policy that keeps a resume to the run it continues.

The checkpoint's metadata schema is `checkpoint_meta.CheckpointMeta`; `training_checkpoint` fills it from a
training job (model, loss statistics, optimiser slots, schedule, RNG streams, progress). A resume continues the
settings recorded in the run directory's config.toml: only the settings in `RESUMABLE` may differ.
"""

from __future__ import annotations

from pathlib import Path

import torch

from bagmar_cli.checkpoint import file_sha256, load_checkpoint
from bagmar_cli.checkpoint_meta import CheckpointMeta, DatasetRef, ModelSpec, ParameterCounts
from bagmar_cli.data import Manifest
from bagmar_cli.engine.runtime import capture_rng, restore_rng
from bagmar_cli.engine.train.build import Job, TrainingProgress
from bagmar_cli.engine.train.dataset import DATASET_KEYS, bind_dataset, bound_to, resolve_data_root
from bagmar_cli.engine.train.metrics import EpochRecord
from bagmar_cli.engine.train.rundir import STAGES, RunDir
from bagmar_cli.engine.train.schedule import load_scheduler_state, scheduler_state
from bagmar_cli.errors import CheckpointError, SettingError, TrainingError
from bagmar_cli.models.finetune import parameter_counts
from bagmar_cli.settings import RESUMABLE, Settings, changed_settings, flatten_settings, read_settings_file

# Where stage 2's backbone comes from: set by the recipe (stage 1's checkpoint), so no config.toml records it.
STAGE2_SOURCE = ("model.weights", "model.pretrained")


def training_checkpoint(job: Job, record: EpochRecord) -> tuple[dict[str, torch.Tensor], CheckpointMeta]:
    """The checkpoint's tensors (model, loss, EMA, optimiser, RNG) and metadata (see README, Checkpoints)."""
    tensors = {f"model.{k}": v for k, v in job.model.state_dict().items()}
    tensors |= {f"loss.{k}": v for k, v in job.loss_fn.state_dict().items()}
    if job.ema is not None:
        tensors |= {f"ema.{k}": v for k, v in job.ema.module.state_dict().items()}
    optim_state = job.optimizer.state_dict()
    for index, slots in optim_state["state"].items():
        tensors |= {f"optim.{index}.{name}": value for name, value in slots.items() if torch.is_tensor(value)}
    rng_tensors, rng_meta = capture_rng()
    tensors |= rng_tensors
    m, state, settings = job.manifest, job.state, job.settings
    trainable, total = parameter_counts(job.model)
    meta = CheckpointMeta(
        settings=settings,
        model=ModelSpec(
            backbone=settings.model.backbone,
            head=settings.model.head,
            num_classes=m.num_classes,
            input_size=job.input_size,
            mean=list(job.inputs.mean),  # the backbone's own when it brings pretrained weights
            std=list(job.inputs.std),
            preprocess=job.preprocess,
        ),
        classes=list(m.classes),
        train_counts=list(job.counts),
        dataset=DatasetRef(
            name=m.dataset,
            root=str(Path(job.root).resolve()),
            manifest_sha256=file_sha256(Path(job.root) / "manifest.json"),
        ),
        epoch=state.epoch,
        best={"epoch": state.best_epoch, "top1": state.best_top1, "split": job.val_name},
        selection_split=job.val_name,
        metrics=record.as_dict(),
        parameters=ParameterCounts(trainable=trainable, total=total),
        optimizer_param_groups=optim_state["param_groups"],
        scheduler=scheduler_state(job.scheduler),
        rng=rng_meta,
    )
    return tensors, meta


def restore_training(job: Job, path: Path) -> TrainingProgress:
    """Load into `job` everything resuming needs from `path` (last.safetensors); returns the progress it records."""
    ckpt = load_checkpoint(path)
    meta = ckpt.meta
    if meta.epoch is None or meta.scheduler is None or meta.rng is None:
        raise CheckpointError(f"{path} records no training state (epoch, scheduler, RNG): it cannot be resumed")
    job.model.load_state_dict(ckpt.section("model"))
    job.loss_fn.load_state_dict(ckpt.section("loss"))
    if job.ema is not None:
        job.ema.module.load_state_dict(ckpt.section("ema"))
    slots: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in ckpt.section("optim").items():
        index, name = key.split(".", 1)
        slots.setdefault(int(index), {})[name] = value
    job.optimizer.load_state_dict({"state": slots, "param_groups": meta.optimizer_param_groups})
    load_scheduler_state(job.scheduler, meta.scheduler)
    restore_rng(ckpt.tensors, meta.rng)
    best_top1, best_epoch = (meta.best.top1, meta.best.epoch) if meta.best else (-1.0, 0)
    return TrainingProgress(meta.epoch, best_top1, best_epoch)


def recorded_settings(out: Path) -> Settings:
    """The settings a run directory recorded when its run started (its config.toml)."""
    run = RunDir.config_of(out)
    if not RunDir.resumable(out):
        raise SettingError(f"`resume`: {RunDir.last_of(out)} not found, nothing to resume")
    if not run.is_file():
        raise SettingError(f"`resume`: {run} not found; the run's settings are unknown, so it cannot be continued")
    return read_settings_file(run, "run settings")


def check_resume(out: Path, settings: Settings, manifest: Manifest) -> None:
    """SettingError naming the first setting in which `settings` (bound to the dataset read: `manifest`) would
    change the run recorded in `out`."""
    recorded = recorded_settings(out)
    root = settings.data.root
    if root is not None and Path(resolve_data_root(recorded.data)).resolve() == root:
        recorded = bound_to(recorded, root, manifest)  # the same dataset: its manifest is read once
    else:
        recorded, _, _ = bind_dataset(recorded)
    first, second = recorded.stages()
    if second is None:
        _check_trained_with(out, recorded)
    else:  # each stage's checkpoint against its stage's settings; stage 2's backbone source is the recipe's
        _check_trained_with(out / STAGES[0], first, config=RunDir.config_of(out))
        _check_trained_with(out / STAGES[1], second, config=RunDir.config_of(out), also=STAGE2_SOURCE)
    for key, old, new in changed_settings(recorded, settings):
        if key not in RESUMABLE:
            raise SettingError(
                f"`resume` continues the run recorded in {RunDir.config_of(out)}: {key} = {new!r} would change it "
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


def continues(folder: Path, resume: bool) -> bool:
    """True when a stage's run directory `folder` is continued: a resume, and the stage has a checkpoint (one cut
    short before its first epoch starts afresh)."""
    return resume and RunDir.last_of(folder).is_file()


def finished(folder: Path, epochs: int) -> bool:
    """True when stage run directory `folder` holds its last epoch's checkpoint."""
    last = RunDir.last_of(folder)
    return last.is_file() and load_checkpoint(last, tensors=False).meta.epoch == epochs
