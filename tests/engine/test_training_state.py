"""engine/training_state.py: a training checkpoint puts a fresh job back exactly where the saved one stood."""

from __future__ import annotations

from pathlib import Path

import torch

from bagmar_cli.checkpoint import save_checkpoint
from bagmar_cli.engine.build import Job, build
from bagmar_cli.engine.distributed import World
from bagmar_cli.engine.run_settings import bind_dataset
from bagmar_cli.engine.training_state import restore_training, training_checkpoint
from bagmar_cli.settings import load_settings


def _job(data: Path, seed: int) -> Job:
    settings = load_settings(
        "digits_lt",
        overrides=["model.backbone=resnet20_cifar", "train.ema=true"],
        flags={"data.root": data, "train.device": "cpu", "train.seed": seed, "train.epochs": 3},
    )
    settings, root, manifest = bind_dataset(settings)
    return build(settings, root, manifest, torch.device("cpu"), World())


def _one_step(job: Job) -> None:
    c, h, w = job.input_size
    images, labels = torch.randn(4, c, h, w), torch.arange(4) % job.manifest.num_classes
    loss = job.loss_fn(job.model(images), labels)
    job.optimizer.zero_grad()
    loss.backward()
    job.optimizer.step()
    job.scheduler.step()
    assert job.ema is not None
    job.ema.update(job.model)


def test_restore_training_round_trips_model_optimiser_schedule_progress_and_rng(
    tmp_path: Path, digits_data: Path
) -> None:
    saved = _job(digits_data, seed=0)
    _one_step(saved)
    saved.state.epoch, saved.state.best_top1, saved.state.best_epoch = 1, 0.5, 1
    tensors, meta = training_checkpoint(saved, {"val": {"top1": 0.5}})
    path = save_checkpoint(tmp_path / "last.safetensors", tensors, meta)
    next_draw = torch.rand(3)  # what the saved job's RNG would draw next

    fresh = _job(digits_data, seed=1)
    progress = restore_training(fresh, path)

    assert (progress.epoch, progress.best_top1, progress.best_epoch) == (1, 0.5, 1)
    assert torch.equal(torch.rand(3), next_draw)
    for name, value in saved.model.state_dict().items():
        assert torch.equal(fresh.model.state_dict()[name], value), name
    assert fresh.ema is not None and saved.ema is not None
    for name, value in saved.ema.module.state_dict().items():
        assert torch.equal(fresh.ema.module.state_dict()[name], value), name
    saved_slots, fresh_slots = saved.optimizer.state_dict()["state"], fresh.optimizer.state_dict()["state"]
    assert saved_slots.keys() == fresh_slots.keys() and saved_slots
    for index, slots in saved_slots.items():
        for name, value in slots.items():
            if torch.is_tensor(value):
                assert torch.equal(fresh_slots[index][name], value)
    assert fresh.scheduler.get_last_lr() == saved.scheduler.get_last_lr()
    assert fresh.scheduler.state_dict()["last_epoch"] == saved.scheduler.state_dict()["last_epoch"]


def test_the_checkpoint_records_the_job_and_its_dataset(tmp_path: Path, digits_data: Path) -> None:
    job = _job(digits_data, seed=0)
    job.state.epoch, job.state.best_top1, job.state.best_epoch = 2, 0.25, 1
    tensors, meta = training_checkpoint(job, {"note": 1})
    assert meta.epoch == 2 and meta.best is not None and (meta.best.epoch, meta.best.top1) == (1, 0.25)
    assert meta.classes == list(job.manifest.classes) and meta.train_counts == list(job.counts)
    assert meta.dataset is not None and meta.dataset.root == str(digits_data.resolve())
    assert meta.model.input_size == job.input_size and meta.metrics == {"note": 1}
    assert any(key.startswith("ema.") for key in tensors) and any(key.startswith("model.") for key in tensors)
