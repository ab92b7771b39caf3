"""BaGMar under torch.distributed: two gloo ranks on CPU, each fed half of every global batch, end with
the statistics of one process fed the whole batch."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from bagmar_cli.losses import BaGMarLoss

WORLD, STEPS, GLOBAL_BATCH, CLASSES = 2, 4, 12, 6
VARIANTS = {  # name: BaGMarLoss options; every accumulation mode, both forms
    "reference": dict(accumulation="reference", form="reference"),
    "sum": dict(accumulation="sum", form="paper"),
    "ema": dict(accumulation="ema", form="paper", ema_decay=0.5),
}


def global_batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    return [
        (
            2 * torch.randn(GLOBAL_BATCH, CLASSES, dtype=torch.float64, generator=generator),
            torch.randint(CLASSES, (GLOBAL_BATCH,), generator=generator),
        )
        for _ in range(STEPS)
    ]


def train(loss_fn: BaGMarLoss, batches, rank: int = 0, world: int = 1) -> torch.Tensor:
    """Feed each batch's rank-th share; returns the step losses."""
    share = GLOBAL_BATCH // world
    losses = [loss_fn(z[rank * share : (rank + 1) * share], y[rank * share : (rank + 1) * share]) for z, y in batches]
    return torch.stack(losses).detach()


def run_rank(rank: int, init_file: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        results = {}
        for name, options in VARIANTS.items():
            loss_fn = BaGMarLoss(CLASSES, lambda1=1.2, lambda2=0.9, **options)
            results[f"{name}.losses"] = train(loss_fn, global_batches(), rank, WORLD)
            results |= {f"{name}.{k}": v for k, v in loss_fn.state_dict().items()}
        save_file(results, f"{out}/rank{rank}.safetensors")
    finally:
        dist.destroy_process_group()


def test_two_ranks_hold_the_statistics_of_one_process_fed_the_global_batch(tmp_path: Path, monkeypatch):
    # Spawned ranks import this module by name: put the directory that name is relative to on their path.
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[run_rank.__module__.count(".")]))
    mp.spawn(run_rank, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [load_file(tmp_path / f"rank{r}.safetensors") for r in range(WORLD)]
    for name, options in VARIANTS.items():
        single = BaGMarLoss(CLASSES, lambda1=1.2, lambda2=0.9, **options)
        losses = train(single, global_batches())
        for key in ("theta", "phi", "running_theta", "running_phi"):
            assert torch.equal(ranks[0][f"{name}.{key}"], ranks[1][f"{name}.{key}"]), (name, key)
            assert torch.allclose(ranks[0][f"{name}.{key}"], getattr(single, key), rtol=1e-12, atol=0), (name, key)
        # equal local batches: the mean of the ranks' mean losses is the global mean loss
        assert torch.allclose((ranks[0][f"{name}.losses"] + ranks[1][f"{name}.losses"]) / 2, losses, rtol=1e-12)
