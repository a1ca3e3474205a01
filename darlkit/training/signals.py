"""Stopping a run cleanly on SIGINT / SIGTERM (Ctrl-C, ``kill``, a scheduler's preemption).

While :func:`stop_on_signals` is active, the first SIGINT or SIGTERM only records the signal
and calls ``on_signal``; :meth:`DARLTrainer.fit <darlkit.training.DARLTrainer.fit>` then ends
the current step, writes ``last.pt`` and raises :class:`TrainingInterrupted`, which the
``darlkit`` command line turns into exit status 130 (SIGINT) or 143 (SIGTERM). A second signal
aborts at once (the previous ``last.pt`` stays intact: checkpoints are written atomically).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator

__all__ = ["TrainingInterrupted", "stop_on_signals", "STOP_SIGNALS"]

STOP_SIGNALS: tuple[int, ...] = tuple(
    s for s in (getattr(signal, "SIGINT", None), getattr(signal, "SIGTERM", None)) if s is not None
)
"""Signals that stop training cleanly."""


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped by a signal.

    Args:
        signum: The signal number.
        message: What happened (e.g. where the checkpoint is).

    Attributes:
        signum: The signal number.
        exit_code: ``128 + signum`` (130 for SIGINT, 143 for SIGTERM), the shell convention.
    """

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.signum = int(signum)
        self.exit_code = 128 + self.signum


def signal_name(signum: int) -> str:
    """``"SIGINT"`` for 2, etc."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


@contextlib.contextmanager
def stop_on_signals(on_signal: Callable[[int], None]) -> Iterator[None]:
    """Route the first SIGINT/SIGTERM to ``on_signal(signum)``; a second one aborts.

    Outside the main thread (where handlers cannot be installed) this does nothing.

    Args:
        on_signal: Called with the signal number of the first signal.

    Yields:
        Nothing; the previous handlers are restored on exit.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    seen: list[int] = []

    def handler(signum, frame):  # noqa: ARG001 - signal handler signature
        if seen:
            raise TrainingInterrupted(signum, f"{signal_name(signum)} received twice; stopped without saving "
                                              "(the last checkpoint written before is intact)")
        seen.append(signum)
        on_signal(signum)

    previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    try:
        for s in STOP_SIGNALS:
            signal.signal(s, handler)
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)
