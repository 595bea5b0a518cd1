"""Ctrl-C that takes effect at a safe point of a training loop."""
from __future__ import annotations

import signal
import threading
from types import TracebackType
from typing import Any, Optional, Type


class DeferredInterrupt:
    """A context manager under which the first Ctrl-C (SIGINT) only sets
    :attr:`requested`; the training loop checks it at the end of an epoch,
    saves a checkpoint and stops. A second Ctrl-C interrupts at once, as
    usual. Outside the main thread (where Python delivers signals) it does
    nothing, and an interrupt is immediate.

    Example::

        with DeferredInterrupt() as stop:
            for epoch in range(epochs):
                train_one_epoch()
                if stop.requested:
                    save_checkpoint(); raise KeyboardInterrupt
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.requested = False
        self._previous: Any = None

    def _handler(self, signum: int, frame: Any) -> None:
        self.requested = True
        signal.signal(signal.SIGINT, self._previous)    # a second Ctrl-C is immediate

    def __enter__(self) -> "DeferredInterrupt":
        if self.enabled and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None
