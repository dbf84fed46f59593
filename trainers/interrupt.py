"""Ctrl-C handling for the training loop: the first SIGINT asks the loop to stop at the next step boundary (after which
the trainer saves a checkpoint); a second one raises KeyboardInterrupt as usual."""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

log = logging.getLogger(__name__)


class StopFlag:
    """Turns the first Ctrl-C (SIGINT) into a request to stop at the next step boundary (main thread only)."""

    def __init__(self) -> None:
        self.requested, self._old = False, None

    def __enter__(self) -> StopFlag:
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        log.warning("interrupt received: saving a checkpoint at the end of this step (Ctrl-C again to abort)")

    def __exit__(self, *exc: Any) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
