"""The run directory: never clobbers another run or foreign files, one trainer at a time, metrics cut on resume."""

import os
import subprocess
import sys

import pytest

from bagmar_cli.engine.train.rundir import LOCK_NAME, RunDir
from bagmar_cli.errors import SettingError, TrainingError


def test_a_directory_holding_a_run_needs_resume_or_overwrite(tmp_path):
    (tmp_path / "metrics.jsonl").write_text("")
    with pytest.raises(SettingError, match="already holds a run"):
        RunDir(tmp_path)
    RunDir(tmp_path, overwrite=True)  # allowed


def test_resume_needs_a_last_checkpoint(tmp_path):
    with pytest.raises(SettingError, match="nothing to resume"):
        RunDir(tmp_path, resume=True)


def test_overwrite_refuses_a_directory_with_foreign_files(tmp_path):
    (tmp_path / "metrics.jsonl").write_text("")
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(SettingError, match=r"notes\.txt"):
        RunDir(tmp_path, overwrite=True)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_overwrite_removes_the_old_runs_files_only_when_entered(tmp_path):
    (tmp_path / "best.safetensors").write_bytes(b"old")
    (tmp_path / "tau-pn.png").write_bytes(b"old")
    with RunDir(tmp_path, overwrite=True):
        assert sorted(p.name for p in tmp_path.iterdir()) == [LOCK_NAME]
    assert list(tmp_path.iterdir()) == []


def test_a_live_lock_refuses_a_second_trainer_and_a_stale_one_is_taken_over(tmp_path):
    run = tmp_path / "run"
    with RunDir(run), pytest.raises(TrainingError, match="in use by another bagmar process"):
        RunDir(run, overwrite=True).__enter__()
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    run.mkdir(exist_ok=True)
    (run / LOCK_NAME).write_text(dead.stdout)
    with RunDir(run):
        assert (run / LOCK_NAME).read_text().strip() == str(os.getpid())


def test_a_directory_the_run_created_is_removed_when_nothing_was_written(tmp_path):
    with RunDir(tmp_path / "new"):
        pass
    assert not (tmp_path / "new").exists()


def test_a_two_stage_run_is_resumable_from_either_stages_last_checkpoint(tmp_path):
    assert not RunDir.resumable(tmp_path)
    (tmp_path / "stage2").mkdir()
    (tmp_path / "stage2" / "config.toml").write_text("")
    assert not RunDir.resumable(tmp_path)  # a stage cut short before its first epoch has nothing to continue
    for stage in ("stage1", "stage2"):
        (tmp_path / stage).mkdir(exist_ok=True)
        (tmp_path / stage / "last.safetensors").write_bytes(b"")
        assert RunDir.resumable(tmp_path)
        (tmp_path / stage / "last.safetensors").unlink()


def test_the_selected_checkpoint_is_best_else_last(tmp_path):
    assert RunDir.selected_of(tmp_path) == tmp_path / "last.safetensors"
    (tmp_path / "best.safetensors").write_bytes(b"")
    assert RunDir.selected_of(tmp_path) == tmp_path / "best.safetensors"


def test_overwrite_replaces_stage_folders_holding_only_bagmar_files(tmp_path):
    (tmp_path / "config.toml").write_text("")
    for stage in ("stage1", "stage2"):
        (tmp_path / stage).mkdir()
        (tmp_path / stage / "last.safetensors").write_bytes(b"")
    with RunDir(tmp_path, overwrite=True):
        assert sorted(p.name for p in tmp_path.iterdir()) == [LOCK_NAME]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("stranger", ["stage1/notes.txt", "stage1/stage1/last.safetensors", "stage3/config.toml"])
def test_overwrite_refuses_a_stage_folder_that_is_not_a_run(tmp_path, stranger):
    (tmp_path / "config.toml").write_text("")
    (tmp_path / stranger).parent.mkdir(parents=True)
    (tmp_path / stranger).write_text("mine")
    with pytest.raises(SettingError, match=stranger.split("/")[0]):
        RunDir(tmp_path, overwrite=True)
    assert (tmp_path / stranger).read_text() == "mine"
