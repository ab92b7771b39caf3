"""Seams into a running training loop, so a caller (a test, a notebook) can watch or stop a run without patching
bagmar's internals. A hook that raises stops the run there: KeyboardInterrupt as Ctrl-C would, any other error
as a failure at that point would."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bagmar_cli.engine.train.metrics import EpochRecord


@dataclass(frozen=True)
class Hooks:
    """Called by the epoch loop of every stage; epochs count from 1 within a stage."""

    on_epoch_start: Callable[[int], None] | None = None  # before the epoch's first step, on every rank
    on_epoch_logged: Callable[[EpochRecord], None] | None = None  # its record written, not yet checkpointed
    on_epoch_end: Callable[[EpochRecord], None] | None = None  # after its checkpoint (rank 0, which writes)

    def epoch_start(self, epoch: int) -> None:
        if self.on_epoch_start is not None:
            self.on_epoch_start(epoch)

    def epoch_logged(self, record: EpochRecord) -> None:
        if self.on_epoch_logged is not None:
            self.on_epoch_logged(record)

    def epoch_end(self, record: EpochRecord) -> None:
        if self.on_epoch_end is not None:
            self.on_epoch_end(record)
