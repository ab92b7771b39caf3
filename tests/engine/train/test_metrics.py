"""engine/train/metrics.py: metrics.jsonl as one typed `EpochRecord` a line."""

from __future__ import annotations

import json
from pathlib import Path

from bagmar_cli.engine.train.metrics import EpochRecord, SplitScores, append_record, keep_records, read_records

SCORES = SplitScores(top1=0.5, top5=0.9, many=0.6, medium=None, few=0.1, macro=0.4, n=80)


def test_a_record_keeps_the_line_format_with_the_scores_under_the_splits_name(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    record = EpochRecord(epoch=3, loss=0.25, lr=0.01, images_per_s=900.0, undecodable=1, split="val", scores=SCORES)
    append_record(path, record)
    line = json.loads(path.read_text())
    assert list(line) == ["epoch", "loss", "lr", "images_per_s", "undecodable", "val"]
    assert line["val"] == SCORES.model_dump() and read_records(path) == [record]


def test_a_line_without_validation_or_undecodable_count_has_neither_key(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    append_record(path, EpochRecord(epoch=1, loss=1.0, lr=0.1, images_per_s=10.0))
    assert json.loads(path.read_text()) == {"epoch": 1, "loss": 1.0, "lr": 0.1, "images_per_s": 10.0}


def test_keep_records_keeps_checkpointed_epochs_and_drops_cut_lines(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    for epoch in (1, 2, 3):
        append_record(path, EpochRecord(epoch=epoch, loss=1.0 / epoch, lr=0.1, images_per_s=10.0))
    with open(path, "a") as handle:
        handle.write('{"epoch": 4, "lo')  # a write cut short by a kill
    keep_records(path, 2)
    assert [json.loads(line)["epoch"] for line in path.read_text().splitlines()] == [1, 2]


def test_a_line_that_is_not_a_record_parses_to_none() -> None:
    assert EpochRecord.parse('{"epoch": 1, "lo') is None
    assert EpochRecord.parse('{"epoch": 1, "loss": 1, "lr": 0.1, "images_per_s": 1, "val": {}, "test": {}}') is None
