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

One fault is not a kill: ``PIPELINE_FAULT=spot-interruption`` (with
``PIPELINE_FAULT_AFTER=SECONDS``, default 0) makes the wrapper of a submission on Spot
capacity play what Fargate Spot does to a task it takes back, that many seconds into
the program: SIGTERM to the program, the checkpoint uploaded, the manifest written with
the interruption. Submissions on on-demand capacity ignore it, so the run goes on
(docs/executors.md, "Spot first").
"""

from __future__ import annotations

import os
import signal

_POINT = os.environ.get("PIPELINE_FAULT", "")
if _POINT:
    os.environ.setdefault("PIPELINE_FAULT_GROUP", str(os.getpgrp()))


SPOT_INTERRUPTION = "spot-interruption"


def spot_interruption_after() -> float | None:
    """Seconds into the program after which the wrapper plays a Spot interruption, or None
    when ``PIPELINE_FAULT`` does not name ``spot-interruption``."""
    if _POINT != SPOT_INTERRUPTION:
        return None
    return max(0.0, float(os.environ.get("PIPELINE_FAULT_AFTER") or 0))


def point(name: str) -> None:
    """Die here if ``PIPELINE_FAULT`` names ``name``."""
    if _POINT and name == _POINT:
        group, own = int(os.environ["PIPELINE_FAULT_GROUP"]), os.getpgrp()
        if group != own:
            os.killpg(group, signal.SIGKILL)
        os.killpg(own, signal.SIGKILL)
