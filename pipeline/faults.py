"""Fault injection for the restart tests: SIGKILL this run at a named point.

``point("collect.attempt-run")`` does nothing unless the environment variable
``PIPELINE_FAULT`` names that point (read once, at import: an unset variable costs one
string test per call). When it does, the process group given by ``PIPELINE_FAULT_GROUP``
(default: this process's own group, i.e. the whole ``pipeline run`` when it was started
in a session of its own) is killed with SIGKILL — no ``finally``, no atexit, exactly as
when a machine dies. ``tests/faults`` uses it for the points that no file marks from
outside (between two writes, inside a warehouse transaction); every point is listed in
docs/operations.md ("Restarting a killed delivery").
"""

from __future__ import annotations

import os
import signal

_POINT = os.environ.get("PIPELINE_FAULT", "")


def point(name: str) -> None:
    """Die here if ``PIPELINE_FAULT`` names ``name``."""
    if _POINT and name == _POINT:
        group = int(os.environ.get("PIPELINE_FAULT_GROUP") or os.getpgrp())
        os.killpg(group, signal.SIGKILL)
