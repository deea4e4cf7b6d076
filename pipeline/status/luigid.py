"""What luigid knows of a run date, asked over its HTTP API (``/api/task_search``), and
how its view is merged into a step's status."""

from __future__ import annotations

import datetime as dt
import json
import sys
import urllib.parse
import urllib.request
from typing import Any

from pipeline.status.model import StepStatus


def scheduler_tasks(url: str, iso: str) -> dict[str, dict[str, Any]]:
    """luigid's tasks whose id mentions the run date, by task id (empty if unreachable)."""
    query = urllib.parse.urlencode({"data": json.dumps({"task_str": iso.replace("-", "_")})})
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/api/task_search?{query}", timeout=10) as r:
            response = json.load(r)["response"]
    except (OSError, ValueError, KeyError) as exc:
        print(f"pipeline status: luigid at {url} not reachable ({exc}); "
              "showing targets only", file=sys.stderr)  # fmt: skip
        return {}
    return {task_id: info for tasks in response.values() for task_id, info in tasks.items()}


def merge_remote(status: StepStatus, info: dict[str, Any], *, worker_dead: bool = False) -> None:
    remote_state = str(info.get("status", "")).upper()
    if status.state != "done":
        if remote_state in ("RUNNING", "BATCH_RUNNING"):
            if worker_dead:
                status.message = (
                    "luigid still lists it as running, but its worker process on this host "
                    "is gone (killed?): run the delivery again"
                )
                return
            # A worker on another host: luigid's word overrules what this host cannot see.
            status.state = "running"
            status.message = None
        elif remote_state == "FAILED" and status.state == "pending":
            status.state = "failed"
    status.executor = status.executor or (info.get("params") or {}).get("executor") or None
    status.message = info.get("status_message") or status.message
    status.progress = info.get("progress_percentage")
    status.log = info.get("tracking_url") or status.log
    if status.state == "running" and info.get("time_running"):
        started = dt.datetime.fromtimestamp(float(info["time_running"]), dt.UTC)
        status.started_at = started.isoformat()
        status.seconds = round((dt.datetime.now(dt.UTC) - started).total_seconds(), 1)
