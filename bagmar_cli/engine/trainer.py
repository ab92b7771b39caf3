"""The training recipe, readable top to bottom: data, model, loss, SGD, schedule, epochs, checkpoints."""

from __future__ import annotations

import json
import math
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.lr_scheduler import LRScheduler
from torch.utils.data import DataLoader, DistributedSampler

from bagmar_cli.checkpoint import file_sha256, load_checkpoint, save_checkpoint
from bagmar_cli.checkpoint_meta import CheckpointMeta, DatasetRef, ModelSpec
from bagmar_cli.console import err, info, warn
from bagmar_cli.data import Manifest, load_split, make_sampler
from bagmar_cli.data.transforms import TensorImages, train_transform
from bagmar_cli.engine import distributed
from bagmar_cli.engine.inference import compute_outputs
from bagmar_cli.engine.run_settings import bind_dataset, check_resume
from bagmar_cli.engine.rundir import RunDir
from bagmar_cli.engine.runtime import capture_rng, resolve_device, restore_rng, seed_everything
from bagmar_cli.engine.schedule import build_scheduler, load_scheduler_state
from bagmar_cli.errors import TrainingError, UsageError, WriteError
from bagmar_cli.files import atomic_write
from bagmar_cli.functional.metrics import classification_report
from bagmar_cli.losses import build_loss
from bagmar_cli.models import Classifier, build_model
from bagmar_cli.settings import DataSettings, Settings


@dataclass
class Progress_:
    """Where training stands: epochs done, best validation top-1 and its epoch."""

    epoch: int = 0
    best_top1: float = -1.0
    best_epoch: int = 0


def selection_split(data: DataSettings, manifest: Manifest) -> str:
    """The split for best-epoch selection: `val` when the dataset has one (auto), else `test`."""
    if data.val_split != "auto":
        if data.val_split not in manifest.splits:
            raise UsageError(f"data.val_split {data.val_split!r} not in the dataset (has {sorted(manifest.splits)})")
        return data.val_split
    return "val" if "val" in manifest.splits else "test"


def train(settings: Settings, out: Path, *, resume: bool = False, overwrite: bool = False) -> Path | None:
    """Run the recipe into run directory `out`; returns the selected checkpoint (None on ranks other than 0).

    A resume refuses settings that would change the run recorded in `out` (see `check_resume`).
    """
    settings, root, manifest = bind_dataset(settings)
    if resume:
        check_resume(out, settings)
    device = resolve_device(settings.train.device)
    world = distributed.init_world(device)
    if world.size > 1 and device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
    run = RunDir(out, overwrite=overwrite, resume=resume) if world.is_main else None
    try:
        if run is None:
            _fit(_build(settings, root, manifest, device, world), None, RunDir.last_of(out) if resume else None)
            return None
        with run:
            info(f"run directory: {run.path}")
            return _fit(_build(settings, root, manifest, device, world), run, run.last if resume else None)
    finally:
        distributed.shutdown(world)


@dataclass
class Job:
    """What one training process holds: settings, data, model, loss, optimiser, schedule and progress."""

    settings: Settings
    root: Path
    manifest: Manifest
    device: torch.device
    world: distributed.World
    model: Classifier
    loss_fn: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: LRScheduler
    val_name: str  # the split that selects the best epoch
    state: Progress_

    @property
    def counts(self) -> list[int]:
        return self.manifest.splits["train"].counts


def _build(settings: Settings, root: Path, manifest: Manifest, device: torch.device, world: distributed.World) -> Job:
    """Seed, then create the model, loss, SGD and schedule the settings describe."""
    seed_everything(settings.train.seed + world.rank)
    model = build_model(settings.model, manifest.num_classes, manifest.image_size[0]).to(device)
    loss_fn = build_loss(settings.loss, manifest.splits["train"].counts, settings.model.head_scale).to(device)
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=settings.optim.lr,
        momentum=settings.optim.momentum,
        weight_decay=settings.optim.weight_decay,
        nesterov=settings.optim.nesterov,
    )
    scheduler = build_scheduler(optimizer, settings.schedule, settings.train.epochs)
    val_name = selection_split(settings.data, manifest)
    return Job(settings, root, manifest, device, world, model, loss_fn, optimizer, scheduler, val_name, Progress_())


def _fit(job: Job, run: RunDir | None, resume_from: Path | None) -> Path | None:
    """The epoch loop: train, step the schedule, validate, log, checkpoint (rank 0 only writes)."""
    if resume_from is not None:
        job.state = _restore(job, resume_from)
    net = DistributedDataParallel(job.model) if job.world.size > 1 else job.model
    train_split = load_split(job.root, "train")
    val_split = load_split(job.root, job.val_name)
    if job.val_name == "test" and job.world.is_main:
        warn("best epoch is selected on the test split (no val split): prepare with --val-per-class N to hold one out")
    if run:
        if resume_from is None:  # a resume keeps the config.toml its weights were trained with
            atomic_write(run.config, job.settings.to_toml().encode())
        _truncate_metrics(run.metrics, job.state.epoch)
    epochs, state = job.settings.train.epochs, job.state
    with _signals_as_exception():
        for epoch in range(state.epoch, epochs):
            job.loss_fn.set_epoch(epoch)
            stats = _train_epoch(job, net, _loader(job, *train_split, epoch), epoch)
            job.scheduler.step()
            state.epoch = epoch + 1
            if run is None:
                continue
            record: dict[str, Any] = {"epoch": state.epoch, **stats}
            if state.epoch % job.settings.train.val_every == 0 or state.epoch == epochs:
                report = _validate(job, *val_split)
                record[job.val_name] = report
                if report["top1"] > state.best_top1:
                    state.best_top1, state.best_epoch = report["top1"], state.epoch
            _append_jsonl(run.metrics, record)  # first: a resume drops lines of epochs not checkpointed
            _save(job, run, record)
            info(_epoch_line(record, job.val_name))
    distributed.barrier(job.world)
    if run is None:
        return None
    return run.best if run.best.exists() else run.last


def _loader(job: Job, images: torch.Tensor, labels: torch.Tensor, epoch: int) -> DataLoader:
    """Batches for one epoch; the shuffle order is a function of (seed, epoch), so resume replays it."""
    settings, manifest, world = job.settings, job.manifest, job.world
    transform = train_transform(settings.data, manifest.image_size, manifest.mean, manifest.std)
    dataset = TensorImages(images, labels, transform)
    generator = torch.Generator().manual_seed(settings.train.seed * 100_003 + epoch)
    batch = settings.train.batch_size // world.size
    if batch < 1:
        raise UsageError(f"train.batch_size {settings.train.batch_size} is smaller than the {world.size} processes")
    workers = settings.data.num_workers
    if world.size > 1:
        if settings.data.sampler != "instance":
            raise UsageError("multi-process training supports data.sampler = 'instance' only")
        sampler = DistributedSampler(dataset, world.size, world.rank, seed=settings.train.seed, drop_last=True)
        sampler.set_epoch(epoch)
        return DataLoader(dataset, batch, sampler=sampler, num_workers=workers, drop_last=True)
    sampler = make_sampler(settings.data.sampler, labels, manifest.num_classes, generator)
    return DataLoader(
        dataset, batch, shuffle=sampler is None, sampler=sampler, generator=generator, num_workers=workers
    )


def _train_epoch(job: Job, net: nn.Module, loader: DataLoader, epoch: int) -> dict[str, float]:
    """One pass over the loader; stops with the step named on a non-finite loss."""
    net.train()
    job.loss_fn.train()
    optimizer, scale = job.optimizer, job.world.size
    total, seen, start = 0.0, 0, time.perf_counter()
    with _progress(job.world) as bar:
        title = f"epoch {epoch + 1}/{job.settings.train.epochs}"
        task = bar.add_task(title, total=len(loader), loss=math.nan, lr=0.0, ips=0.0)
        for step, (images, labels) in enumerate(loader):
            images, labels = images.to(job.device, non_blocking=True), labels.to(job.device, non_blocking=True)
            loss = job.loss_fn(net(images), labels)
            if not torch.isfinite(loss):
                kept = (
                    "the last good checkpoint is kept"
                    if job.state.epoch
                    else "no epoch completed, so there is no checkpoint to go back to"
                )
                raise TrainingError(
                    f"non-finite loss ({loss.item()}) at epoch {epoch + 1} step {step + 1}; "
                    f"{kept}; lower optim.lr or check the data"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(labels)
            seen += len(labels)
            rate = seen * scale / max(time.perf_counter() - start, 1e-9)
            bar.update(task, advance=1, loss=total / seen, lr=optimizer.param_groups[0]["lr"], ips=rate)
    elapsed = time.perf_counter() - start
    return {"loss": total / max(seen, 1), "lr": optimizer.param_groups[0]["lr"], "images_per_s": seen * scale / elapsed}


def _progress(world: distributed.World) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}  lr {task.fields[lr]:.4g}  {task.fields[ips]:.0f} img/s"),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=not (world.is_main and err.is_terminal),
    )


def _validate(job: Job, images: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
    """Accuracy on the selection split (the same metrics `bagmar eval` reports)."""
    manifest = job.manifest
    logits, _ = compute_outputs(
        job.model, images, manifest.mean, manifest.std, batch_size=job.settings.eval.batch_size, device=job.device
    )
    report = classification_report(logits, labels, torch.as_tensor(job.counts))
    return {k: report[k] for k in ("top1", "top5", "many", "medium", "few", "macro", "n")}


def _save(job: Job, run: RunDir, record: dict[str, Any]) -> None:
    tensors, meta = _training_state(job, record)
    if job.state.best_epoch == job.state.epoch:  # best before last: a run stopped between them replays this epoch
        save_checkpoint(run.best, tensors, meta)
    save_checkpoint(run.last, tensors, meta)


def _training_state(job: Job, record: dict[str, Any]) -> tuple[dict[str, torch.Tensor], CheckpointMeta]:
    """The checkpoint's tensors (model, loss, optimiser, RNG) and metadata (see README, Checkpoints)."""
    tensors = {f"model.{k}": v for k, v in job.model.state_dict().items()}
    tensors |= {f"loss.{k}": v for k, v in job.loss_fn.state_dict().items()}
    optim_state = job.optimizer.state_dict()
    for index, slots in optim_state["state"].items():
        tensors |= {f"optim.{index}.{name}": value for name, value in slots.items() if torch.is_tensor(value)}
    rng_tensors, rng_meta = capture_rng()
    tensors |= rng_tensors
    m, state, settings = job.manifest, job.state, job.settings
    meta = CheckpointMeta(
        settings=settings,
        model=ModelSpec(
            backbone=settings.model.backbone,
            head=settings.model.head,
            num_classes=m.num_classes,
            input_size=list(m.image_size),
            mean=list(m.mean),
            std=list(m.std),
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
        metrics=record,
        optimizer_param_groups=optim_state["param_groups"],
        scheduler=job.scheduler.state_dict(),
        rng=rng_meta,
    )
    return tensors, meta


def _restore(job: Job, path: Path) -> Progress_:
    """Load everything resuming needs from last.safetensors."""
    ckpt = load_checkpoint(path)
    job.model.load_state_dict(ckpt.section("model"))
    job.loss_fn.load_state_dict(ckpt.section("loss"))
    slots: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in ckpt.section("optim").items():
        index, name = key.split(".", 1)
        slots.setdefault(int(index), {})[name] = value
    meta = ckpt.meta
    job.optimizer.load_state_dict({"state": slots, "param_groups": meta.optimizer_param_groups})
    load_scheduler_state(job.scheduler, meta.scheduler)
    restore_rng(ckpt.tensors, meta.rng)
    info(f"resuming from {path} after epoch {meta.epoch}")
    best_top1, best_epoch = (meta.best.top1, meta.best.epoch) if meta.best else (-1.0, 0)
    return Progress_(meta.epoch, best_top1, best_epoch)


def _append_jsonl(path: Path, record: dict[str, Any]) -> None:
    try:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
    except OSError as exc:
        raise WriteError.of(exc, path) from exc


def _truncate_metrics(path: Path, epochs_done: int) -> None:
    """On resume drop lines of epochs that were not checkpointed (and any cut short); on a fresh run start empty."""
    lines = path.read_text().splitlines() if path.exists() else []
    kept = [line for line in lines if _epoch_of(line) <= epochs_done]
    atomic_write(path, "".join(line + "\n" for line in kept).encode())


def _epoch_of(line: str) -> float:
    """The epoch a metrics line records; infinity for a line that is not a record (a write cut short)."""
    try:
        record = json.loads(line)
        return record["epoch"] if isinstance(record, dict) and isinstance(record.get("epoch"), int) else math.inf
    except json.JSONDecodeError:
        return math.inf


def _epoch_line(record: dict[str, Any], val_name: str) -> str:
    line = (
        f"epoch {record['epoch']}: loss {record['loss']:.4f}, lr {record['lr']:.4g}, {record['images_per_s']:.0f} img/s"
    )
    if val_name in record:
        r = record[val_name]
        line += f", {val_name} top-1 {r['top1']:.2%} (many {_pct(r['many'])}, medium {_pct(r['medium'])}, few {_pct(r['few'])})"
    return line


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


class _signals_as_exception:
    """Turn SIGTERM into KeyboardInterrupt so both stop a run the same way (checkpoint of the last epoch kept)."""

    def __enter__(self) -> None:
        self._previous = signal.getsignal(signal.SIGTERM)
        try:
            signal.signal(signal.SIGTERM, self._raise)
        except ValueError:  # not the main thread (e.g. under a test runner's thread)
            self._previous = None

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)

    @staticmethod
    def _raise(signum: int, frame: object) -> None:
        raise KeyboardInterrupt
