"""Ctrl-C handling for the training loop: the first SIGINT asks the loop to stop at the next step boundary (after which
the trainer saves a checkpoint); a second one raises KeyboardInterrupt as usual (`StopFlag`). Data-parallel ranks stop
on every SIGINT or SIGTERM without aborting (`StopRequests`)."""

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

class StopRequests:
    """Every SIGINT or SIGTERM asks for a stop at the next step boundary; the ranks agree on it, save and exit. Under
    torchrun a terminal Ctrl-C reaches each worker twice (directly, then forwarded by the agent, which also sends
    SIGTERM on shutdown), so unlike the single-process trainer a repeated signal does not abort: torchrun SIGKILLs
    workers that take longer than its shutdown timeout. Main thread only."""

    def __init__(self) -> None:
        self.requested, self._old = False, {}

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():
            self._old = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGINT, signal.SIGTERM)}
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if not self.requested:
            log.warning("signal %d: every rank saves a checkpoint at the end of this step, then stops", signum)
        self.requested = True

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
