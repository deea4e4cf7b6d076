"""`pipeline approve` of a wide delivery: 200 cohorts signed off in one command.

A delivery of 200 cohorts (the no-op program of `bench scheduling`) is run once with
`pipeline run --local-scheduler` into each warehouse backend: a DuckDB file, and BigQuery
as the real client sees it at the wire (the test suite's fake server, `tests/warehouse/
bqfake.py`, through `PIPELINE_BIGQUERY_ENDPOINT`). Then `pipeline approve --run-date D
--by NAME --accept-regression REASON --program SPEC` — the command exactly, every cohort
of the date — runs as a subprocess:

- DuckDB: ``REPEATS`` times, each on a fresh copy of the file; the median wall time;
- BigQuery: once; what it asks of BigQuery, counted in the fake's records: query jobs
  (the publish transactions apart) and other API calls, in all and per cohort. The fake
  answers at once, so its wall time says nothing about BigQuery's: there a query job
  takes about a second or more, and a multi-statement transaction one job per
  statement, so the number of jobs one after another is what the command's time follows.

Before 2026-12-06 (this benchmark on that code, d6c0024, 20:35 UTC the same day): every
cohort was decided on five queries of its own (its variants twice, its golden-case build,
its checks and its row counts), and on DuckDB each query opened and closed the file:
33.2 s on DuckDB (runs 33.7, 32.0, 33.2 s); on BigQuery 1,203 query jobs (1,003 besides
the 200 publish transactions) and 6,031 API calls. Now the facts of the whole date are
read in three queries, DuckDB keeps one connection for the command, and each cohort costs
its publish transaction and a look at the 7 staging tables' columns (``tables.get``).
At 20:41 that day: DuckDB 8.1 s; on BigQuery 206 query jobs, 200 of them publish
transactions of 19 statements each: 3,800 child jobs one after another, and 2,043 API
calls.

From 22:00 UTC that day the cohorts of one command are published together, up to 100 in one
transaction (docs/warehouse.md): the statements one after another are what BigQuery's
time follows, so they are counted too (``statements``: every statement of every query
job, a script's statements being child jobs). This benchmark on the code before it
(fe412bb) and after, one after the other (22:00-22:05 UTC, load below 1.5): DuckDB 8.15 s
-> 1.79 s (runs 8.15, 8.29, 8.12 -> 1.86, 1.79, 1.73); BigQuery 206 -> 8 query jobs,
200 -> 2 publish transactions, 3,810 -> 48 statements (3,800 -> 38 in the publish
transactions: 19 per transaction either way), 2,043 -> 63 API calls.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.bench_scheduling import _raw, _spec

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
COHORTS, REPEATS, DATE = 200, 3, "2026-12-01"
APPROVE = ["approve", "--run-date", DATE, "--by", "bench", "--accept-regression", "bench"]


def _env(home: Path, warehouse: str, endpoint: str = "") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PIPELINE_"))}
    env.update({
        "PIPELINE_HOME": str(home), "PIPELINE_RESPONDENT_KEY": "bench", "DD_AGENT_HOST": "",
        "PIPELINE_WAREHOUSE": warehouse, "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    })  # fmt: skip
    if endpoint:
        env["PIPELINE_BIGQUERY_ENDPOINT"] = endpoint
    return env


def _pipeline(args: list[str], env: dict[str, str], ok: tuple[int, ...] = (0,)) -> float:
    started = time.monotonic()
    done = subprocess.run(
        [str(BIN / "pipeline"), *args], cwd=REPO, env=env, capture_output=True, text=True
    )
    wall = time.monotonic() - started
    if done.returncode not in ok or re.search(r"\b0 of \d+ cohort", done.stdout):
        raise RuntimeError(f"pipeline {args[0]} failed ({done.returncode}): {done.stderr[-2000:]}")
    return wall


def _statements(sql: str) -> int:
    import sqlglot

    return sum(1 for s in sqlglot.parse(sql, read="bigquery") if s is not None)


@contextlib.contextmanager
def _fake_bigquery():
    sys.path.insert(0, str(REPO))
    from pytest_httpserver import HTTPServer

    from tests.warehouse.bqfake import FakeBigQuery

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per request
    server = HTTPServer(host="127.0.0.1", port=0)
    server.start()
    try:
        yield FakeBigQuery(server)
    finally:
        server.stop()


def run() -> dict[str, Any]:
    metrics: dict[str, Any] = {"cohorts": COHORTS}
    with tempfile.TemporaryDirectory(prefix="bench-approve-") as tmp:
        root = Path(tmp)
        raw, spec = _raw(root, COHORTS), _spec(root)
        delivery = ["run", "--run-date", DATE, "--raw", str(raw), "--program", str(spec)]
        delivery += ["--local-scheduler"]

        home = root / "duckdb"
        file = home / "warehouse.duckdb"
        env = _env(home, f"duckdb://{file}")
        _pipeline(delivery, env)
        shutil.copy(file, root / "ingested.duckdb")
        walls = []
        for _ in range(REPEATS):
            shutil.copy(root / "ingested.duckdb", file)
            walls.append(_pipeline([*APPROVE, "--program", str(spec)], env))
        metrics["duckdb: approve_s"] = round(statistics.median(walls), 2)
        metrics["duckdb: approve_runs_s"] = [round(w, 2) for w in walls]
        metrics["duckdb: ms per cohort"] = round(1000 * statistics.median(walls) / COHORTS, 1)

        with _fake_bigquery() as bq:
            env = _env(root / "bigquery", "bigquery://bench-project/survey", bq.url)
            _pipeline(delivery, env)
            before_jobs, before_calls = len(bq.queries()), len(bq.requests)
            wall = _pipeline([*APPROVE, "--program", str(spec)], env)
            metrics["bigquery (fake): approve_s"] = round(wall, 2)
            queries = bq.queries()[before_jobs:]
            publishes = [q for q in queries if q.startswith("BEGIN TRANSACTION;")]
            calls = len(bq.requests) - before_calls
            metrics["bigquery (fake): query jobs"] = len(queries)
            metrics["bigquery (fake): of them publish transactions"] = len(publishes)
            metrics["bigquery (fake): other query jobs"] = len(queries) - len(publishes)
            metrics["bigquery (fake): query jobs per cohort"] = round(len(queries) / COHORTS, 2)
            # BigQuery runs each statement of a script as a child job, one after another.
            statements = sum(_statements(q) for q in queries)
            metrics["bigquery (fake): statements (child jobs) in all"] = statements
            metrics["bigquery (fake): of them in publish transactions"] = sum(
                _statements(q) for q in publishes
            )
            metrics["bigquery (fake): API calls (jobs, polls, tables)"] = calls
            metrics["bigquery (fake): API calls per cohort"] = round(calls / COHORTS, 1)
            published = bq.sql('SELECT COUNT(*) FROM "bench-project"."survey_published".approvals')[
                0
            ][0]
            metrics["bigquery (fake): cohorts published"] = published
    return metrics


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
