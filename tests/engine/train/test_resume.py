"""engine/train/resume.py: a training checkpoint puts a fresh job back exactly where the saved one stood, and a resume
continues only the run its directory recorded."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bagmar_cli.checkpoint import save_checkpoint
from bagmar_cli.engine.distributed import World
from bagmar_cli.engine.train.build import Job, build
from bagmar_cli.engine.train.dataset import bind_dataset
from bagmar_cli.engine.train.metrics import EpochRecord, SplitScores
from bagmar_cli.engine.train.resume import check_resume, recorded_settings, restore_training, training_checkpoint
from bagmar_cli.errors import SettingError
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
    scores = SplitScores(top1=0.5, top5=1.0, many=0.5, medium=None, few=None, macro=0.5, n=10)
    record = EpochRecord(epoch=1, loss=1.0, lr=0.1, images_per_s=10.0, split="val", scores=scores)
    tensors, meta = training_checkpoint(saved, record)
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
    record = EpochRecord(epoch=2, loss=0.5, lr=0.1, images_per_s=100.0)
    tensors, meta = training_checkpoint(job, record)
    assert meta.epoch == 2 and meta.best is not None and (meta.best.epoch, meta.best.top1) == (1, 0.25)
    assert meta.classes == list(job.manifest.classes) and meta.train_counts == list(job.counts)
    assert meta.dataset is not None and meta.dataset.root == str(digits_data.resolve())
    assert meta.model.input_size == job.input_size and meta.metrics == record.as_dict()
    assert any(key.startswith("ema.") for key in tensors) and any(key.startswith("model.") for key in tensors)


def test_nothing_to_resume_without_last_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(SettingError, match="nothing to resume"):
        recorded_settings(tmp_path)


def test_a_resume_reads_the_dataset_manifest_once_and_refuses_a_changed_setting(
    cli, digits_data, tmp_path, monkeypatch
):
    run = tmp_path / "run"
    args = ["--device", "cpu", "--epochs", "1", "--set", "model.backbone=resnet8_cifar"]
    assert cli("train", "--data", digits_data, "--out", run, *args).code == 0
    settings, _, manifest = bind_dataset(recorded_settings(run))
    reads: list[Path] = []
    monkeypatch.setattr("bagmar_cli.engine.train.dataset.load_manifest", reads.append)
    check_resume(run, settings, manifest)  # the recorded settings themselves: nothing changes, nothing read again
    assert reads == []
    changed = settings.model_copy(update={"train": settings.train.model_copy(update={"epochs": 5})})
    with pytest.raises(SettingError, match=r"`resume` continues the run .*: train.epochs = 5 would change it"):
        check_resume(run, changed, manifest)
