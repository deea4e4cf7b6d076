"""`pipeline status` of a wide delivery, from another machine, on an S3 storage root.

A delivery of 200 cohorts × two program variants (the no-op program of `bench
scheduling` under two names) is run once with `pipeline run --local-scheduler` (the local
executor) and its storage root on a real `moto_server` process; then `pipeline status
--run-date D --json` — the command an operator runs on a laptop, with a home of its own —
is timed ``REPEATS`` times (median) with the S3 endpoint reached two ways: directly
(moto on loopback, ~3 ms a request) and through a loopback proxy that holds each
request ``DELAY_S`` (20 ms) before passing it on: the round trip to S3 from outside its
region. (moto answers every request with "Connection: close", so each request is a
connection of its own and waits once.) Reported: the rows (cohort × variant), the S3
requests one status makes (counted in moto's log) and per row, and the wall times. The
summary `pipeline run` ends with is the same collection, without the warehouse's
sign-off records.

Before 2026-12-06 every target's existence was a HEAD request, every cohort's attempts a
LIST, a model's run.json was read twice, and all of it one request after another: this
benchmark run on that code (8138f8f, one status each, the same day) measured 6,815
requests (17.0 per row), 26.5 s on loopback and 179.6 s with 20 ms a request. Now: one
listing of the date, about 7.5 reads per row, sixteen at a time, and the warehouse's count
query once, however many threads ask at once.

Then `pipeline report --run-date D` of the same delivery, once, on loopback (``report_s``;
``report_mib``: the page). It collects the same way, reads each row's results and checks,
and draws a forest chart per row and one per cohort for the variants (600 charts). Before
2026-12-06 20:45 UTC the charts were drawn one after another (57.5 s for the report,
measured ad hoc the same day); now by a process per core.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.bench_cron import BUCKET, REGION, _clients, _moto
from bench.bench_scheduling import _raw, _spec

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
COHORTS, REPEATS, DELAY_S, DATE = 200, 3, 0.020, "2026-12-01"


@contextlib.contextmanager
def _delayed(url: str, delay: float) -> Iterator[str]:
    """A TCP proxy on loopback that holds each connection ``delay`` seconds, then passes
    it on to ``url`` both ways."""
    port = int(url.rsplit(":", 1)[1])
    loop = asyncio.new_event_loop()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(delay)
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
        await asyncio.gather(
            pipe(reader, up_writer), pipe(up_reader, writer), return_exceptions=True
        )

    server = loop.run_until_complete(asyncio.start_server(handle, "127.0.0.1", 0))
    listening = server.sockets[0].getsockname()[1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listening}"
    finally:
        loop.call_soon_threadsafe(server.close)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)


def _env(root: Path, url: str, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({
        "AWS_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": REGION, "AWS_EC2_METADATA_DISABLED": "true",
        "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
        "PIPELINE_HOME": str(home), "PIPELINE_RESPONDENT_KEY": "bench", "DD_AGENT_HOST": "",
        "PIPELINE_STORAGE_ROOT": f"s3://{BUCKET}/work",
        "PIPELINE_WAREHOUSE": f"duckdb://{root / 'warehouse.duckdb'}",
    })  # fmt: skip
    return env


def _lines(path: Path) -> int:
    with path.open("rb") as fh:
        return sum(1 for _ in fh)


def run() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-status-") as tmp, _moto(Path(tmp)) as url:
        root = Path(tmp)
        _clients(url)["s3"].create_bucket(Bucket=BUCKET)
        raw, champion = _raw(root, COHORTS), _spec(root)
        challenger = root / "noop-challenger.toml"
        challenger.write_text(champion.read_text().replace('name = "noop"', 'name = "noop-b"'))
        started = time.monotonic()
        ran = subprocess.run(
            [str(BIN / "pipeline"), "run", "--run-date", DATE, "--raw", str(raw),
             "--program", str(champion), "--program", str(challenger), "--local-scheduler"],
            cwd=REPO, env=_env(root, url, root), capture_output=True, text=True,
        )  # fmt: skip
        run_s = time.monotonic() - started
        if ran.returncode != 0:
            raise RuntimeError(f"the delivery failed ({ran.returncode}): {ran.stdout[-2000:]}")
        laptop = root / "laptop"
        laptop.mkdir()
        metrics: dict[str, Any] = {"cohorts": COHORTS, "variants": 2, "run_s": round(run_s, 1)}
        for name, delay in (("loopback", 0.0), ("delayed", DELAY_S)):
            walls, requests = [], []
            with _delayed(url, delay) as endpoint:
                for _ in range(REPEATS):
                    before = _lines(root / "moto.log")
                    started = time.monotonic()
                    shown = subprocess.run(
                        [str(BIN / "pipeline"), "status", "--run-date", DATE, "--json"],
                        cwd=REPO, env=_env(root, endpoint, laptop), capture_output=True,
                        text=True,
                    )  # fmt: skip
                    walls.append(time.monotonic() - started)
                    if shown.returncode != 0 or shown.stdout.count('"cohort":') < 2 * COHORTS:
                        raise RuntimeError(f"pipeline status failed: {shown.stderr[-2000:]}")
                    requests.append(_lines(root / "moto.log") - before)
            metrics[f"{name}_delay_ms"] = round(delay * 1000)
            metrics[f"{name}_status_s"] = round(statistics.median(walls), 2)
            metrics[f"{name}_status_runs_s"] = [round(w, 2) for w in walls]
            metrics[f"{name}_requests"] = max(requests)
        metrics["rows"] = 2 * COHORTS
        metrics["requests_per_row"] = round(metrics["loopback_requests"] / metrics["rows"], 2)
        started = time.monotonic()
        page = root / "report.html"
        reported = subprocess.run(
            [str(BIN / "pipeline"), "report", "--run-date", DATE, "--out", str(page)],
            cwd=REPO, env=_env(root, url, laptop), capture_output=True, text=True,
        )  # fmt: skip
        if reported.returncode != 0:
            raise RuntimeError(f"pipeline report failed: {reported.stderr[-2000:]}")
        metrics["report_s"] = round(time.monotonic() - started, 1)
        metrics["report_mib"] = round(page.stat().st_size / 2**20, 1)
        return metrics


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
