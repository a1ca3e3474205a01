"""The files a training run owns in its folder: refusal to overwrite them, clearing, log cut-back.

A run folder holds :data:`RUN_FILES` (checkpoints, logs, figure, configuration). Starting a new
run in a folder that already holds one of them would replace the old checkpoints and mix the
logs, so :func:`check_run_folder` refuses it unless the run resumes (``--resume``) or the user
asks to start over (``--overwrite``), in which case :func:`clear_run_files` removes exactly those
files (and the temporary files of interrupted writes) and nothing else: other files and folders
(a synthetic ``data/`` folder, notes, other runs) are never touched. On resume,
:func:`truncate_logs` cuts the logs back to the checkpoint's step, so no step is logged twice.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

__all__ = ["RUN_FILES", "LOG_FILES", "existing_run_files", "check_run_folder", "clear_run_files", "truncate_logs"]

LOG_FILES: tuple[str, ...] = ("metrics.jsonl", "metrics.csv", "train_log.jsonl")
"""Per-step logs of a run (JSON lines and CSV, each record with a ``"step"``)."""

RUN_FILES: tuple[str, ...] = ("last.pt", "best.pt", *LOG_FILES, "figure.png", "config.json")
"""Files a training run writes into its folder (what ``--overwrite`` removes)."""


def existing_run_files(folder: str | os.PathLike[str]) -> list[Path]:
    """The files of :data:`RUN_FILES` present in ``folder`` (empty if it does not exist)."""
    folder = Path(folder)
    return [folder / name for name in RUN_FILES if (folder / name).exists()]


def check_run_folder(folder: str | os.PathLike[str], *, resume: bool, overwrite: bool) -> None:
    """Refuse to start a new run over a previous run's files.

    Args:
        folder: The run folder.
        resume: The run continues from a checkpoint (its files are expected).
        overwrite: The user asked to replace the previous run (:func:`clear_run_files`).

    Raises:
        ValueError: If ``resume`` and ``overwrite`` are both set.
        FileExistsError: If neither is set and ``folder`` holds a file of :data:`RUN_FILES`;
            the message names the folder, the files and the two options.
    """
    if resume and overwrite:
        raise ValueError("--resume and --overwrite exclude each other (continue the run, or replace it)")
    if resume or overwrite:
        return
    found = existing_run_files(folder)
    if found:
        raise FileExistsError(
            f"--out {folder} already holds a training run ({', '.join(p.name for p in found)}); pass --resume "
            "to continue it or --overwrite to replace it, or choose another --out"
        )


def clear_run_files(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete a previous run's files (:data:`RUN_FILES` and their ``.NAME.*.tmp`` leftovers).

    Args:
        folder: The run folder.

    Returns:
        The removed paths. Nothing else in ``folder`` is touched.
    """
    folder = Path(folder)
    removed = []
    for path in existing_run_files(folder):
        path.unlink()
        removed.append(path)
    if folder.is_dir():
        for entry in folder.iterdir():
            if entry.is_file() and any(entry.name.startswith(f".{name}.") and entry.name.endswith(".tmp") for name in RUN_FILES):
                entry.unlink()
                removed.append(entry)
    return removed


def _replace_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.cut.tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _step_of(value: object) -> float | None:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def truncate_logs(folder: str | os.PathLike[str], step: int) -> dict[str, int]:
    """Drop the log records of steps after ``step`` (the checkpoint a run resumes from).

    JSON-lines logs keep the lines whose ``"step"`` is <= ``step``; the CSV keeps its header and
    those rows. A torn last line (a write killed midway) is dropped too. Files are rewritten
    atomically; a file with nothing to drop is left as it is.

    Args:
        folder: The run folder.
        step: The resumed checkpoint's step.

    Returns:
        ``{file name: number of records dropped}`` for the files that changed.
    """
    folder = Path(folder)
    dropped: dict[str, int] = {}
    for name in LOG_FILES:
        path = folder / name
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8")
        if name.endswith(".jsonl"):
            keep, gone = [], 0
            for line in text.splitlines():
                try:
                    s = _step_of(json.loads(line).get("step"))
                except (json.JSONDecodeError, AttributeError):
                    s = None
                if s is not None and s <= step:
                    keep.append(line + "\n")
                elif line.strip():
                    gone += 1
            new = "".join(keep)
        else:
            rows = list(csv.reader(io.StringIO(text)))
            if not rows:
                continue
            header, body = rows[0], rows[1:]
            col = header.index("step") if "step" in header else None

            def in_range(row: list[str]) -> bool:
                s = _step_of(row[col]) if col is not None and len(row) == len(header) else None
                return s is not None and s <= step

            kept = [r for r in body if in_range(r)]
            gone = len(body) - len(kept)
            out = io.StringIO()
            writer = csv.writer(out, lineterminator="\r\n" if "\r\n" in text else "\n")
            writer.writerows([header, *kept])
            new = out.getvalue()
        if gone:
            _replace_text(path, new)
            dropped[name] = gone
    return dropped
