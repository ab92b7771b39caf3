"""metrics.jsonl: one `EpochRecord` a line, appended after each epoch and cut back to the checkpoint on a resume."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, NonNegativeInt, PositiveInt, ValidationError, model_validator

from bagmar_cli.errors import WriteError
from bagmar_cli.files import atomic_write


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SplitScores(_Strict):
    """The selection split's accuracy after an epoch (fractions; a shot group without classes is None)."""

    top1: float
    top5: float
    many: float | None
    medium: float | None
    few: float | None
    macro: float
    n: NonNegativeInt  # images scored


class EpochRecord(_Strict):
    """What one epoch's line in metrics.jsonl holds; the selection split's scores sit under its name (`val`)."""

    epoch: PositiveInt  # epochs completed
    loss: float  # the epoch's size-weighted mean training loss
    lr: float  # the learning rate after the epoch's last step
    images_per_s: float  # training throughput over all ranks
    undecodable: NonNegativeInt | None = None  # image files skipped this epoch (image-file datasets only)
    split: str | None = None  # the selection split, when this epoch validated
    scores: SplitScores | None = None

    @model_validator(mode="before")
    @classmethod
    def _split_from_its_key(cls, data: Any) -> Any:
        """A line names its split by key (`"val": {...}`): lift the one extra key into `split` and `scores`."""
        if not isinstance(data, dict) or "split" in data:
            return data
        extra = [key for key in data if key not in cls.model_fields]
        if len(extra) != 1:
            return data  # no split, or several: let validation name them
        (name,) = extra
        return {**{k: v for k, v in data.items() if k != name}, "split": name, "scores": data[name]}

    def as_dict(self) -> dict[str, Any]:
        """The line's JSON object: training numbers, `undecodable` when counted, the scores under the split's name."""
        line: dict[str, Any] = self.model_dump(exclude={"split", "scores", "undecodable"})
        if self.undecodable is not None:
            line["undecodable"] = self.undecodable
        if self.split is not None and self.scores is not None:
            line[self.split] = self.scores.model_dump()
        return line

    @classmethod
    def parse(cls, line: str) -> EpochRecord | None:
        """The record a line holds; None for one that is not a record (a write cut short)."""
        try:
            return cls.model_validate_json(line)
        except ValidationError:
            return None


def append_record(path: Path, record: EpochRecord) -> None:
    """Add one epoch's record to metrics.jsonl at `path`."""
    try:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record.as_dict()) + "\n")
    except OSError as exc:
        raise WriteError.of(exc, path) from exc


def read_records(path: Path) -> list[EpochRecord]:
    """The records of metrics.jsonl at `path`, in order; lines that are not records are left out."""
    lines = path.read_text().splitlines() if path.exists() else []
    return [record for record in map(EpochRecord.parse, lines) if record is not None]


def keep_records(path: Path, epochs_done: int) -> None:
    """Keep the records of checkpointed epochs only: a resume drops later ones (and any line cut short)."""
    lines = path.read_text().splitlines() if path.exists() else []
    kept = [line for line in lines if (record := EpochRecord.parse(line)) is not None and record.epoch <= epochs_done]
    atomic_write(path, "".join(line + "\n" for line in kept).encode())
