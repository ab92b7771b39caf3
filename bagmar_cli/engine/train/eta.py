"""The whole run's ETA, said after every epoch: all epochs left and the stages after this one, not the epoch's."""

from __future__ import annotations

import time


class RunClock:
    """Seconds per optimiser step measured since this stage (or its resume) started, times the steps left in this
    stage and in the stages after it (a frozen-backbone stage 2 is faster per step: the ETA is then an upper bound
    until it starts)."""

    def __init__(self, steps_per_epoch: int, epochs_left: int, later_steps: int = 0) -> None:
        self.steps_per_epoch, self.epochs_left, self.later_steps = steps_per_epoch, epochs_left, later_steps
        self.start = time.perf_counter()

    def seconds_left(self, epochs_left: int, now: float | None = None) -> float:
        """The estimate once this stage has `epochs_left` epochs to go (`now`: a perf_counter reading)."""
        done = (self.epochs_left - epochs_left) * self.steps_per_epoch
        elapsed = (time.perf_counter() if now is None else now) - self.start
        left = epochs_left * self.steps_per_epoch + self.later_steps
        return elapsed / max(done, 1) * left

    def line(self, epochs_left: int) -> str:
        """`run ETA 4m05s` (`run done` when nothing is left), for the epoch line."""
        seconds = self.seconds_left(epochs_left)
        return "run done" if epochs_left == 0 and self.later_steps == 0 else f"run ETA {duration(seconds)}"


def duration(seconds: float) -> str:
    """42s, 5m07s, 3h02m."""
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
