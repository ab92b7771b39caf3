"""torch.distributed under torchrun: one process per device, gradients and BaGMar statistics all-reduced."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    """This process's place in the job; a single process is rank 0 of 1."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_world(device: torch.device) -> World:
    """Join the process group torchrun describes in the environment; no-op for a single process."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def under_torchrun() -> bool:
    """True in a process torchrun started (it sets WORLD_SIZE)."""
    return "WORLD_SIZE" in os.environ


def torchrun_command(nproc_per_node: int, args: list[str]) -> list[str]:
    """`python -m torch.distributed.run --standalone --nproc-per-node N -m bagmar_cli ARGS` (one machine)."""
    run = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc_per_node)]
    return [*run, "-m", "bagmar_cli", *args]


def launch(nproc_per_node: int, args: list[str]) -> int:
    """Run `bagmar ARGS` in N processes under torchrun; returns torchrun's exit code (each rank reports itself)."""
    return subprocess.run(torchrun_command(nproc_per_node, args), check=False).returncode


def barrier(world: World) -> None:
    if world.size > 1:
        dist.barrier()


def shutdown(world: World) -> None:
    if world.size > 1 and dist.is_initialized():
        dist.destroy_process_group()


def broadcast_buffers(module: torch.nn.Module, world: World) -> None:
    """Give every rank rank 0's buffers (BatchNorm statistics drift apart in the last training steps)."""
    if world.size > 1:
        for buffer in module.buffers():
            dist.broadcast(buffer, 0)


def gather_strided(shard: torch.Tensor, total: int, world: World, device: torch.device | str) -> torch.Tensor:
    """The whole of a tensor whose rows were split by `rows[rank::size]` across ranks, in the original order."""
    if world.size == 1:
        return shard
    longest = -(-total // world.size)  # shards differ by at most one row: pad to the longest to gather
    padded = shard.new_zeros(longest, *shard.shape[1:])
    padded[: len(shard)] = shard
    parts = [torch.empty_like(padded, device=device) for _ in range(world.size)]
    dist.all_gather(parts, padded.to(device))
    whole = shard.new_empty(total, *shard.shape[1:])
    for rank, part in enumerate(parts):
        rows = len(range(rank, total, world.size))
        whole[rank :: world.size] = part[:rows].to(whole.device)
    return whole


def sum_over_ranks(value: int, world: World, device: torch.device | str = "cpu") -> int:
    """`value` summed over every rank (a count each process kept for its own shard)."""
    if world.size == 1:
        return value
    total = torch.tensor([value], dtype=torch.int64, device=device)
    dist.all_reduce(total)
    return int(total)
