"""The files of a run folder: where checkpoints, logs, the figure and the config go."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["RunFiles"]


@dataclass(frozen=True)
class RunFiles:
    """Paths of the files a training run writes into its folder.

    Build it with :meth:`in_folder`; nothing touches the disk until :meth:`prepare`.

    Attributes:
        root: The run folder.
        last: ``last.pt``, the resumable checkpoint of the latest step.
        best: ``best.pt``, the checkpoint of the best validation Dice.
        metrics_jsonl: ``metrics.jsonl``, one validation record per line.
        metrics_csv: ``metrics.csv``, the same records as a table.
        train_log: ``train_log.jsonl``, the training losses every ``log_every`` steps.
        figure: ``figure.png``, the example grid of the latest validation.
        config: ``config.json``, the run configuration.
    """

    root: Path
    last: Path
    best: Path
    metrics_jsonl: Path
    metrics_csv: Path
    train_log: Path
    figure: Path
    config: Path

    @classmethod
    def in_folder(cls, root: str | os.PathLike[str]) -> RunFiles:
        """The standard file names inside ``root``.

        Args:
            root: The run folder (need not exist yet).

        Returns:
            The run's file paths.
        """
        root = Path(root)
        return cls(
            root=root,
            last=root / "last.pt",
            best=root / "best.pt",
            metrics_jsonl=root / "metrics.jsonl",
            metrics_csv=root / "metrics.csv",
            train_log=root / "train_log.jsonl",
            figure=root / "figure.png",
            config=root / "config.json",
        )

    def checkpoint(self, kind: str) -> Path:
        """Path of the checkpoint ``kind`` (``"last"`` or ``"best"``).

        Args:
            kind: ``"last"`` or ``"best"``.

        Returns:
            The ``.pt`` path.

        Raises:
            ValueError: If ``kind`` is not a known checkpoint kind.
        """
        if kind not in ("last", "best"):
            raise ValueError(f"checkpoint kind must be 'last' or 'best', got {kind!r}")
        return self.last if kind == "last" else self.best

    def prepare(self, config: dict[str, Any]) -> None:
        """Create the folder and write ``config.json`` (call on the main process only).

        Args:
            config: The run configuration as plain data (``TrainConfig.to_dict()``).
        """
        self.root.mkdir(parents=True, exist_ok=True)
        self.config.write_text(json.dumps(config, indent=2) + "\n")
