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
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from bagmar_cli.checkpoint import atomic_write, file_sha256, load_checkpoint, save_checkpoint
from bagmar_cli.console import err, info, warn
from bagmar_cli.data import Manifest, default_data_dir, get_dataset, load_manifest, load_split, make_sampler
from bagmar_cli.data.transforms import TensorImages, train_transform
from bagmar_cli.engine import distributed
from bagmar_cli.engine.inference import compute_outputs
from bagmar_cli.engine.rundir import RunDir
from bagmar_cli.engine.runtime import capture_rng, resolve_device, restore_rng, seed_everything
from bagmar_cli.engine.schedule import build_scheduler, load_scheduler_state
from bagmar_cli.errors import TrainingError, UsageError, WriteError
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


def resolve_data_root(data: DataSettings) -> Path:
    """`data.root`, or the default directory `bagmar prepare` writes for `data.dataset` at `data.imb`."""
    if data.root is not None:
        return data.root
    if data.dataset is None:
        raise UsageError("no dataset: pass --data DIR (a directory written by `bagmar prepare`)")
    get_dataset(data.dataset)  # an unknown name is a usage error, not a missing directory
    return default_data_dir(data.dataset, data.imb, data.profile)


def selection_split(data: DataSettings, manifest: Manifest) -> str:
    """The split for best-epoch selection: `val` when the dataset has one (auto), else `test`."""
    if data.val_split != "auto":
        if data.val_split not in manifest.splits:
            raise UsageError(f"data.val_split {data.val_split!r} not in the dataset (has {sorted(manifest.splits)})")
        return data.val_split
    return "val" if "val" in manifest.splits else "test"


def train(settings: Settings, out: Path, *, resume: bool = False, overwrite: bool = False) -> Path | None:
    """Run the recipe into run directory `out`; returns the selected checkpoint (None on ranks other than 0)."""
    root = resolve_data_root(settings.data)
    manifest = load_manifest(root)
    device = resolve_device(settings.train.device)
    world = distributed.init_world(device)
    if world.size > 1 and device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
    run = RunDir(out, overwrite=overwrite, resume=resume) if world.is_main else None
    try:
        if run is None:
            _fit(settings, root, manifest, device, world, None, resume, Path(out))
            return None
        with run:
            info(f"run directory: {run.path}")
            return _fit(settings, root, manifest, device, world, run, resume, run.path)
    finally:
        distributed.shutdown(world)


def _fit(settings, root, manifest, device, world, run, resume, out) -> Path:  # noqa: ANN001 (internal)
    seed_everything(settings.train.seed + world.rank)
    counts = manifest.splits["train"].counts
    model = build_model(settings.model, manifest.num_classes, manifest.image_size[0]).to(device)
    loss_fn = build_loss(settings.loss, counts).to(device)
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=settings.optim.lr,
        momentum=settings.optim.momentum,
        weight_decay=settings.optim.weight_decay,
        nesterov=settings.optim.nesterov,
    )
    scheduler = build_scheduler(optimizer, settings.schedule, settings.train.epochs)
    state = Progress_()
    if resume:
        state = _restore(out / "last.safetensors", model, loss_fn, optimizer, scheduler)
    net = DistributedDataParallel(model) if world.size > 1 else model
    train_images, train_labels = load_split(root, "train")
    val_name = selection_split(settings.data, manifest)
    val_images, val_labels = load_split(root, val_name)
    if val_name == "test" and world.is_main:
        warn("best epoch is selected on the test split (no val split): prepare with --val-per-class N to hold one out")
    context = _Context(settings, root, manifest, val_name, counts, world)
    if run:
        atomic_write(run.config, settings.to_toml().encode())
        _truncate_metrics(run.metrics, state.epoch)
    with _signals_as_exception():
        for epoch in range(state.epoch, settings.train.epochs):
            loss_fn.set_epoch(epoch)
            loader = _loader(settings, manifest, train_images, train_labels, epoch, world)
            stats = _train_epoch(net, loss_fn, loader, optimizer, device, epoch, settings.train.epochs, world)
            scheduler.step()
            state.epoch = epoch + 1
            if not world.is_main:
                continue
            record: dict[str, Any] = {"epoch": state.epoch, **stats}
            if state.epoch % settings.train.val_every == 0 or state.epoch == settings.train.epochs:
                report = _validate(model, val_images, val_labels, counts, manifest, settings, device)
                record[val_name] = report
                if report["top1"] > state.best_top1:
                    state.best_top1, state.best_epoch = report["top1"], state.epoch
            _append_jsonl(run.metrics, record)  # first: a resume drops lines of epochs not checkpointed
            _save(run, context, model, loss_fn, optimizer, scheduler, state, record)
            info(_epoch_line(record, val_name))
    distributed.barrier(world)
    if run is None:
        return Path("")
    return run.best if run.best.exists() else run.last


@dataclass
class _Context:
    settings: Settings
    root: Path
    manifest: Manifest
    val_name: str
    counts: list[int]
    world: distributed.World


def _loader(settings: Settings, manifest: Manifest, images, labels, epoch: int, world) -> DataLoader:  # noqa: ANN001
    """Batches for one epoch; the shuffle order is a function of (seed, epoch), so resume replays it."""
    transform = train_transform(settings.data, manifest.image_size, manifest.mean, manifest.std)
    dataset = TensorImages(images, labels, transform)
    generator = torch.Generator().manual_seed(settings.train.seed * 100_003 + epoch)
    batch = settings.train.batch_size // world.size
    if batch < 1:
        raise UsageError(f"train.batch_size {settings.train.batch_size} is smaller than the {world.size} processes")
    if world.size > 1:
        if settings.data.sampler != "instance":
            raise UsageError("multi-process training supports data.sampler = 'instance' only")
        sampler = DistributedSampler(dataset, world.size, world.rank, seed=settings.train.seed, drop_last=True)
        sampler.set_epoch(epoch)
        return DataLoader(dataset, batch, sampler=sampler, num_workers=settings.data.num_workers, drop_last=True)
    sampler = make_sampler(settings.data.sampler, labels, manifest.num_classes, generator)
    return DataLoader(
        dataset,
        batch,
        shuffle=sampler is None,
        sampler=sampler,
        generator=generator,
        num_workers=settings.data.num_workers,
    )


def _train_epoch(net, loss_fn, loader, optimizer, device, epoch, epochs, world) -> dict[str, float]:  # noqa: ANN001
    """One pass over the loader; stops with the step named on a non-finite loss."""
    net.train()
    loss_fn.train()
    total, seen, start = 0.0, 0, time.perf_counter()
    with _progress(world) as bar:
        task = bar.add_task(f"epoch {epoch + 1}/{epochs}", total=len(loader), loss=math.nan, lr=0.0, ips=0.0)
        for step, (images, labels) in enumerate(loader):
            images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            loss = loss_fn(net(images), labels)
            if not torch.isfinite(loss):
                raise TrainingError(
                    f"non-finite loss ({loss.item()}) at epoch {epoch + 1} step {step + 1}; "
                    "the last good checkpoint is kept; lower optim.lr or check the data"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(labels)
            seen += len(labels)
            rate = seen * world.size / max(time.perf_counter() - start, 1e-9)
            lr = optimizer.param_groups[0]["lr"]
            bar.update(task, advance=1, loss=total / seen, lr=lr, ips=rate)
    elapsed = time.perf_counter() - start
    return {"loss": total / max(seen, 1), "lr": optimizer.param_groups[0]["lr"], "images_per_s": seen * world.size / elapsed}


def _progress(world) -> Progress:  # noqa: ANN001
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


def _validate(model, images, labels, counts, manifest, settings, device) -> dict[str, Any]:  # noqa: ANN001
    logits, _ = compute_outputs(
        model, images, manifest.mean, manifest.std, batch_size=settings.eval.batch_size, device=device
    )
    report = classification_report(logits, labels, torch.as_tensor(counts))
    return {k: report[k] for k in ("top1", "top5", "many", "medium", "few", "macro", "n")}


def _save(run, ctx: _Context, model, loss_fn, optimizer, scheduler, state: Progress_, record) -> None:  # noqa: ANN001
    tensors, meta = _training_state(ctx, model, loss_fn, optimizer, scheduler, state, record)
    if state.best_epoch == state.epoch:  # best before last: a run stopped between them replays this epoch
        save_checkpoint(run.best, tensors, meta)
    save_checkpoint(run.last, tensors, meta)


def _training_state(ctx: _Context, model, loss_fn, optimizer, scheduler, state, record):  # noqa: ANN001, ANN202
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors |= {f"loss.{k}": v for k, v in loss_fn.state_dict().items()}
    optim_state = optimizer.state_dict()
    for index, slots in optim_state["state"].items():
        tensors |= {f"optim.{index}.{name}": value for name, value in slots.items() if torch.is_tensor(value)}
    rng_tensors, rng_meta = capture_rng()
    tensors |= rng_tensors
    m = ctx.manifest
    meta = {
        "settings": ctx.settings.model_dump(mode="json"),
        "model": {
            "backbone": ctx.settings.model.backbone,
            "head": ctx.settings.model.head,
            "num_classes": m.num_classes,
            "input_size": list(m.image_size),
            "mean": list(m.mean),
            "std": list(m.std),
        },
        "classes": list(m.classes),
        "train_counts": list(ctx.counts),
        "dataset": {
            "name": m.dataset,
            "root": str(Path(ctx.root).resolve()),
            "manifest_sha256": file_sha256(Path(ctx.root) / "manifest.json"),
        },
        "epoch": state.epoch,
        "best": {"epoch": state.best_epoch, "top1": state.best_top1, "split": ctx.val_name},
        "selection_split": ctx.val_name,
        "metrics": record,
        "optimizer_param_groups": optim_state["param_groups"],
        "scheduler": scheduler.state_dict(),
        "rng": rng_meta,
    }
    return tensors, meta


def _restore(path: Path, model: Classifier, loss_fn, optimizer, scheduler) -> Progress_:  # noqa: ANN001
    """Load everything resuming needs from last.safetensors."""
    ckpt = load_checkpoint(path)
    model.load_state_dict(ckpt.section("model"))
    loss_fn.load_state_dict(ckpt.section("loss"))
    slots: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in ckpt.section("optim").items():
        index, name = key.split(".", 1)
        slots.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": slots, "param_groups": ckpt.meta["optimizer_param_groups"]})
    load_scheduler_state(scheduler, ckpt.meta["scheduler"])
    restore_rng(ckpt.tensors, ckpt.meta["rng"])
    best = ckpt.meta.get("best", {})
    info(f"resuming from {path} after epoch {ckpt.meta['epoch']}")
    return Progress_(ckpt.meta["epoch"], best.get("top1", -1.0), best.get("epoch", 0))


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
    line = f"epoch {record['epoch']}: loss {record['loss']:.4f}, lr {record['lr']:.4g}, {record['images_per_s']:.0f} img/s"
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

