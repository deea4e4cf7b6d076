"""SIGTERM interrupts a run like Ctrl-C, but never inside a log call: raised there, the
interrupt can leave a log handler's lock taken, and the run then hangs at its exit with
every thread waiting on it (seen once in `bench cron`: 26 threads in Handler.acquire and
140 ECS tasks left running)."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from types import FrameType

import pytest

from pipeline.worker import _interrupt, interrupted_by_sigterm


class Capture(logging.Handler):
    """A handler that keeps the frame of its own emit (inside logging's call chain)."""

    frame: FrameType | None = None

    def emit(self, record: logging.LogRecord) -> None:
        self.frame = sys._getframe()


def test_sigterm_inside_a_log_call_is_delivered_again_after_it() -> None:
    capture = Capture()
    log = logging.getLogger("test-interrupt")
    log.addHandler(capture)
    try:
        log.warning("a line")
    finally:
        log.removeHandler(capture)
    assert capture.frame is not None
    again = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: again.set())
    try:
        _interrupt(signal.SIGTERM, capture.frame)  # inside logging: no exception now
        assert again.wait(5)  # the signal came again, a moment later
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_sigterm_elsewhere_interrupts_at_once() -> None:
    with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
        _interrupt(signal.SIGTERM, sys._getframe())
    with pytest.raises(KeyboardInterrupt, match="SIGTERM"), interrupted_by_sigterm():
        signal.raise_signal(signal.SIGTERM)
    assert signal.getsignal(signal.SIGTERM) is not _interrupt  # restored after the block
