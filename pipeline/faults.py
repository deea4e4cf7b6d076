"""Fault injection for the restart tests: SIGKILL this run at a named point.

``point("collect.attempt-run")`` does nothing unless the environment variable
``PIPELINE_FAULT`` names that point (read once, at import: an unset variable costs one
string test per call). When it does, the process group given by ``PIPELINE_FAULT_GROUP``
and this process's own group are killed with SIGKILL — no ``finally``, no atexit,
exactly as when a machine dies. The first process that imports this module with
``PIPELINE_FAULT`` set (``pipeline run``, started in a session of its own) puts its
group in ``PIPELINE_FAULT_GROUP``, so a point in the wrapper (its own session) kills the
whole run with it. ``tests/faults`` uses it for the points that no file marks from
outside (between two writes, inside a warehouse transaction); every point is listed in
docs/operations.md ("Restarting a killed delivery").
"""

from __future__ import annotations

import os
import signal

_POINT = os.environ.get("PIPELINE_FAULT", "")
if _POINT:
    os.environ.setdefault("PIPELINE_FAULT_GROUP", str(os.getpgrp()))


def point(name: str) -> None:
    """Die here if ``PIPELINE_FAULT`` names ``name``."""
    if _POINT and name == _POINT:
        group, own = int(os.environ["PIPELINE_FAULT_GROUP"]), os.getpgrp()
        if group != own:
            os.killpg(group, signal.SIGKILL)
        os.killpg(own, signal.SIGKILL)
