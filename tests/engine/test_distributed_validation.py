"""Validation shared across ranks: each of 2 gloo processes runs a strided shard, the report is the whole split's."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

KEYS = ("top1", "top5", "many", "medium", "few", "macro", "n")


def test_two_processes_report_what_one_process_reports_on_the_same_weights(cli, digits_data: Path, tmp_path: Path):
    out = tmp_path / "ddp"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "bagmar_cli",
        "train", "--data", str(digits_data), "--out", str(out), "--epochs", "1", "--device", "cpu",
        "--set", "model.backbone=resnet8_cifar",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    recorded = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])["val"]
    outcome = cli("eval", out / "last.safetensors", "--split", "val", "--json", "--no-plots", "--device", "cpu")
    assert outcome.code == 0, outcome.err
    single = outcome.json()
    assert recorded["n"] == 100  # the whole val split: two shards of 50, no padding duplicates
    assert {k: recorded[k] for k in KEYS} == {k: single[k] for k in KEYS}


def _shard_worker(rank: int, init: str, out: str) -> None:
    """One of two gloo ranks: rank 1's BatchNorm statistics drift, then both evaluate their shard and gather."""
    import torch.distributed as dist

    from bagmar_cli.data.splits import OpenedSplit, TensorBatches
    from bagmar_cli.engine import distributed
    from bagmar_cli.engine.evaluate.inference import sharded_outputs

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    model, images, labels = _model_and_data()
    if rank == 1:
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean += 0.5  # what the last training step of another shard leaves behind
    world = distributed.World(rank, 2, rank)
    distributed.broadcast_buffers(model, world)
    opened = OpenedSplit("val", TensorBatches(images, labels, lambda x: x.float() / 255), labels, [1] * 10, False)
    outputs = sharded_outputs(model, opened, world, batch_size=4)
    if rank == 1:
        save_file({"logits": outputs.logits.contiguous(), "labels": outputs.labels.contiguous()}, out)
    dist.destroy_process_group()


def _model_and_data():
    from bagmar_cli.models import build_model
    from bagmar_cli.settings import ModelSettings

    torch.manual_seed(0)
    model = build_model(ModelSettings(backbone="resnet8_cifar"), 10, 3).eval()
    images = torch.randint(0, 256, (23, 3, 8, 8), dtype=torch.uint8)  # 23: shards of 12 and 11
    return model, images, torch.arange(23) % 10


@pytest.mark.slow  # 15 s; the two-process report test stays in the default suite
def test_sharded_outputs_equal_one_process_in_split_order(tmp_path: Path):
    """Rank 1 ends up with the whole split's logits, in order, computed with rank 0's BatchNorm statistics."""
    import torch.multiprocessing as mp

    out = tmp_path / "rank1.safetensors"
    mp.spawn(_shard_worker, args=(f"file://{tmp_path / 'store'}", str(out)), nprocs=2, join=True)
    gathered = load_file(out)
    model, images, labels = _model_and_data()
    with torch.no_grad():
        expected = model(images.float() / 255)
    assert torch.equal(gathered["labels"], labels)
    assert torch.allclose(gathered["logits"], expected, atol=1e-5)
