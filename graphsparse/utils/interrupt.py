"""Ctrl-C that takes effect at a safe point of a training loop."""
from __future__ import annotations

import signal
import threading
from types import TracebackType
from typing import Any, Callable, Optional, Type


class DeferredInterrupt:
    """A context manager under which the first Ctrl-C (SIGINT) only sets
    :attr:`requested`; the training loop checks it at the end of an epoch,
    saves a checkpoint and stops. A second Ctrl-C interrupts at once, as
    usual. ``stop`` is an optional callable polled by :attr:`requested` too
    (a programmatic stop). Outside the main thread (where Python delivers signals) it does
    nothing, and an interrupt is immediate.

    Example::

        with DeferredInterrupt() as stop:
            for epoch in range(epochs):
                train_one_epoch()
                if stop.requested:
                    save_checkpoint(); raise KeyboardInterrupt
    """

    def __init__(self, enabled: bool = True, stop: Optional[Callable[[], bool]] = None) -> None:
        self.enabled = enabled
        self.stop = stop
        self._flag = False
        self._previous: Any = None

    @property
    def requested(self) -> bool:
        """A Ctrl-C arrived, or ``stop()`` (if given) returns true."""
        return self._flag or (self.stop is not None and bool(self.stop()))

    def __call__(self) -> bool:
        return self.requested

    def _handler(self, signum: int, frame: Any) -> None:
        self._flag = True
        signal.signal(signal.SIGINT, self._previous)    # a second Ctrl-C is immediate

    def __enter__(self) -> "DeferredInterrupt":
        if self.enabled and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None:
        self.close()

    def close(self) -> None:
        """Restores the previous SIGINT handler."""
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


class TrainingInterrupted(KeyboardInterrupt):
    """Raised by the training loops (:func:`~graphsparse.structure.fit_structure`,
    :func:`graphsparse.cnn.train.fit`,
    :func:`graphsparse.regularizers.experiment.fit_regularized`) after Ctrl-C
    (or their ``stop()``), once the state was saved to ``checkpoint``; the same
    call with ``resume=True`` (the command-line tools: ``--resume``) continues
    bit-identically. A ``KeyboardInterrupt``, so code that catches Ctrl-C
    catches it too."""

    def __init__(self, checkpoint: Optional[str], epoch: Optional[int] = None) -> None:
        self.checkpoint, self.epoch = checkpoint, epoch
        after = "" if epoch is None else f" after epoch {epoch}"
        where = (f"saved{after} to {checkpoint}; rerun the same command with --resume to "
                 f"continue" if checkpoint else "no checkpoint path was given, nothing saved")
        super().__init__(f"training interrupted: {where}")
