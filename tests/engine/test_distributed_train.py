"""`torchrun` training on CPU (gloo): one checkpoint, written by rank 0, with the global batch's statistics."""

import subprocess
import sys
from pathlib import Path

import pytest

from bagmar_cli.checkpoint import load_checkpoint


# every sampler works under torchrun (each rank its strided share of the global order: tests/data/test_samplers.py)
@pytest.mark.parametrize("sampler", ["instance", pytest.param("class_aware", marks=pytest.mark.slow)])
def test_torchrun_two_processes(digits_data: Path, tmp_path: Path, sampler: str):
    out = tmp_path / "ddp"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "bagmar_cli",
        "train",
        "--data",
        str(digits_data),
        "--out",
        str(out),
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--set",
        "model.backbone=resnet20_cifar",
        "--set",
        f"data.sampler={sampler}",
        "--set",
        "optim.lr_batch=128",  # the preset's batch of 64 is not the lr's: said once, by rank 0
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines() == [str(out / "best.safetensors")]  # only rank 0 prints
    rule = "optim.lr 0.1 is stated for a global batch of 128; this run's is 64 (2 processes x 32): keeping it"
    assert [line for line in done.stderr.splitlines() if "stated for a global batch" in line] == [
        f'{rule} (optim.lr_scaling = "keep"; "linear" would give 0.05)'
    ]
    ckpt = load_checkpoint(out / "last.safetensors")
    theta, phi = ckpt.section("loss")["theta"], ckpt.section("loss")["phi"]
    assert theta.sum() > 0 and theta.shape == phi.shape == (10,)
    assert not (out / ".lock").exists()


@pytest.mark.slow  # 26 s of the default suite's budget; test_torchrun_two_processes stays
def test_torchrun_trains_both_stages_in_one_process_group(digits_data: Path, tmp_path: Path):
    """Two stages under torchrun: one process group for both, every rank starts stage 2 from stage 1's backbone."""
    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "bagmar_cli", "train", "--data", str(digits_data), "--out", str(out)]
    command += ["--epochs", "1", "--device", "cpu", "--nproc-per-node", "2", "--set", "model.backbone=resnet20_cifar"]
    for item in ("stage2.train.epochs=1", "stage2.model.freeze=backbone", "stage2.data.sampler=class_aware"):
        command += ["--set", item]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines() == [str(out / "stage2" / "best.safetensors")]
    start = load_checkpoint(out / "stage1" / "best.safetensors").section("model.backbone")
    end = load_checkpoint(out / "stage2" / "last.safetensors").section("model.backbone")
    assert start.keys() == end.keys() and all((start[k] == end[k]).all() for k in start)
    assert not any(p.name == ".lock" for p in out.rglob("*"))


@pytest.mark.slow  # 34 s
def test_torchrun_on_image_files_keeps_the_ranks_in_step_when_a_whole_batch_fails_to_decode(tmp_path: Path):
    """One image per process and step: the image of rank 1's third step does not decode, so rank 1 has nothing to
    train on there. It must still take that step (with its last good batch), or rank 0 waits for it forever."""
    import json

    from support.image_trees import write_jpeg

    from bagmar_cli.data.splits import open_split
    from bagmar_cli.engine.batches import EpochOrder
    from bagmar_cli.engine.distributed import World
    from bagmar_cli.engine.train.dataset import bind_dataset
    from bagmar_cli.settings import load_settings

    for c, n in enumerate((6, 4, 3)):
        for split, count in (("train", n), ("val", 2), ("test", 2)):
            for i in range(count):
                write_jpeg(tmp_path / "tree" / split / f"class{c}" / f"{i}.jpg", seed=c)
    prepare = [sys.executable, "-m", "bagmar_cli", "prepare", "folder", "--root", str(tmp_path / "tree")]
    done = subprocess.run([*prepare, "--out", str(tmp_path / "ds")], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    sets = ["model.backbone=resnet8_cifar", "data.crop=32", "data.num_workers=0", "data.max_bad_fraction=1.0"]
    settings, root, _ = bind_dataset(load_settings("digits_lt", overrides=[*sets, f"data.root='{tmp_path / 'ds'}'"]))
    settings.train.batch_size = 2  # one image per process and step
    split = open_split(root, "train", None)
    order = EpochOrder(settings, split.labels, 3, World(1, 2))
    order.set_epoch(0)
    dataset = split.dataset
    broken = dataset.root / dataset.paths[int(order.indices()[2])]  # type: ignore[attr-defined]
    broken.write_bytes(b"not an image")

    command = [
        sys.executable,
        "-m",
        "bagmar_cli",
        "train",
        "--data",
        str(tmp_path / "ds"),
        "--out",
        str(tmp_path / "r"),
    ]
    command += [
        "--preset",
        "digits_lt",
        "--epochs",
        "1",
        "--batch-size",
        "2",
        "--device",
        "cpu",
        "--nproc-per-node",
        "2",
    ]
    for item in sets:
        command += ["--set", item]
    done = _run_in_own_group(command, timeout=240)  # a hung rank must not outlive the test
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((tmp_path / "r" / "metrics.jsonl").read_text())["undecodable"] == 1
    assert str(broken.resolve()) in done.stderr or broken.name in done.stderr


def _run_in_own_group(command: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """subprocess.run in a new process group, all of which (torchrun's workers too) is killed on a timeout."""
    import os
    import signal

    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    ) as p:
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.communicate()
            raise
    return subprocess.CompletedProcess(command, p.returncode, out, err)
