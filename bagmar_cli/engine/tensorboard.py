"""TensorBoard event files beside metrics.jsonl and the τ curve, when the optional `tensorboard` package is
installed (`pip install 'bagmar[tensorboard]'`); without it nothing is written and nothing is said.

Training logs one point per epoch (step = the epoch, 1-based): `train/loss`, `train/lr`, `train/images_per_s`,
and `SPLIT/top1`, `top5`, `many`, `medium`, `few`, `macro` of the selection split when it was evaluated.
`tune-tau` logs its curve as `tau/STEM/METHOD/top1` (and many, medium, few) at step round(100 τ).
`tensorboard --logdir runs` then shows every run, each stage of a two-stage run as its own.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bagmar_cli.engine.train.metrics import EpochRecord

EVENT_FILES = "events.out.tfevents.*"  # the names SummaryWriter gives its files
TAU_STEPS = 100  # the τ curve's step is round(100 τ): TensorBoard's steps are integers
GROUP_KEYS = ("top1", "top5", "many", "medium", "few", "macro")
TRAIN_KEYS = ("loss", "lr", "images_per_s")
TAU_KEYS = ("top1", "many", "medium", "few")


def available() -> bool:
    """Whether the `tensorboard` package (which torch's SummaryWriter writes through) is installed."""
    return importlib.util.find_spec("tensorboard") is not None


def _writer(folder: Path, purge_step: int | None = None) -> Any:
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(folder), purge_step=purge_step)


class EpochLog:
    """The run directory's event file, opened at the first epoch this process logs: a run that fails before its
    first epoch leaves none, and a resumed run hides the points of the epochs it trains again (`purge_step`)."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.enabled = folder, available()
        self._writer: Any = None

    def epoch(self, record: EpochRecord) -> None:
        """Log one metrics.jsonl record (its `epoch`, training numbers and the selection split's scores)."""
        if not self.enabled:
            return
        if self._writer is None:
            self._writer = _writer(self.folder, purge_step=record.epoch)
        scalars = {f"train/{key}": getattr(record, key) for key in TRAIN_KEYS}
        if record.split is not None and record.scores is not None:
            scalars |= {f"{record.split}/{key}": getattr(record.scores, key) for key in GROUP_KEYS}
        _add(self._writer, scalars.items(), record.epoch)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def log_tau_curve(folder: Path, checkpoint: Path, method: str, rows: list[dict[str, float | None]]) -> bool:
    """Add tune-tau's curve to the event files in `folder`; False when tensorboard is not installed."""
    if not available():
        return False
    writer = _writer(folder)
    try:
        for row in rows:
            tau = row["tau"]
            assert tau is not None  # every row has its τ
            prefix = f"tau/{Path(checkpoint).stem}/{method}"
            _add(writer, ((f"{prefix}/{key}", row.get(key)) for key in TAU_KEYS), round(tau * TAU_STEPS))
    finally:
        writer.close()
    return True


def _add(writer: Any, scalars: Iterable[tuple[str, Any]], step: int) -> None:
    for tag, value in scalars:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            writer.add_scalar(tag, float(value), step)
    writer.flush()
