"""engine/distributed.py: the single-process paths (no process group) and the torchrun command line."""

from __future__ import annotations

import sys

import pytest
import torch

from bagmar_cli.engine import distributed
from bagmar_cli.engine.distributed import World


def test_a_single_process_is_rank_0_of_1_without_a_process_group(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    world = distributed.init_world(torch.device("cpu"))
    assert world == World() and world.is_main and not distributed.under_torchrun()
    assert not torch.distributed.is_initialized()
    assert not World(rank=1, size=2).is_main
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert distributed.under_torchrun() and distributed.init_world(torch.device("cpu")) == World()


def test_single_process_collectives_return_their_input() -> None:
    shard = torch.arange(6.0).reshape(3, 2)
    assert distributed.gather_strided(shard, 3, World(), "cpu") is shard
    assert distributed.sum_over_ranks(7, World()) == 7
    module = torch.nn.BatchNorm1d(2)
    module.running_mean.fill_(3.0)
    distributed.broadcast_buffers(module, World())
    distributed.barrier(World())
    distributed.shutdown(World())
    assert torch.equal(module.running_mean, torch.full((2,), 3.0))


def test_torchrun_command_runs_bagmar_under_this_python() -> None:
    command = distributed.torchrun_command(4, ["train", "--out", "runs/x"])
    assert command[0] == sys.executable
    assert command[1:3] == ["-m", "torch.distributed.run"]
    assert command[command.index("--nproc-per-node") + 1] == "4"
    assert command[-5:] == ["-m", "bagmar_cli", "train", "--out", "runs/x"]
