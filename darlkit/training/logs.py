"""The run's logs: training losses (``train_log.jsonl``) and validation records (``metrics.*``)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from darlkit.training.run_files import RunFiles

__all__ = ["RunLog"]


class RunLog:
    """Appends the records of a run to its log files; a no-op without a run folder or off rank 0.

    Args:
        files: The run's files (``None``: write nothing).
        enabled: Whether this process writes (``False`` on ranks other than 0).
    """

    def __init__(self, files: RunFiles | None, *, enabled: bool = True) -> None:
        self.files = files
        self.enabled = bool(enabled) and files is not None

    def train(self, record: dict[str, Any]) -> None:
        """Append one line of training losses to ``train_log.jsonl``.

        Args:
            record: ``{"step", "time", loss name: value, ...}`` (JSON-serialisable).
        """
        if self.enabled:
            _append_jsonl(self.files.train_log, record)

    def validation(self, record: dict[str, Any]) -> None:
        """Append one validation record to ``metrics.jsonl`` and ``metrics.csv``.

        Args:
            record: ``{"step", "time", "<metric>_mean", "<metric>_std", ..., "n"}``.
        """
        if self.enabled:
            _append_jsonl(self.files.metrics_jsonl, record)
            _append_csv(self.files.metrics_csv, record)


def _append_jsonl(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")


def _append_csv(path: Path, record: dict[str, Any]) -> None:
    new = not path.exists()
    with open(path, "a", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(record))
        if new:
            writer.writeheader()
        writer.writerow(record)
