"""Ingest per cohort (issue 9 item 4): what one cohort's DuckDB load costs, and where.

One process loads a cohort's `model_estimates`, `validation_checks` and `pipeline_runs`
(sample-sized frames, as IngestResults builds them) into a DuckDB file that already
holds `COHORTS` cohorts, `REPEATS` times, each a new cohort, and reports medians:

- `load, own connection`: `DuckDBWarehouse.replace` as a forked IngestResults process
  does it (open the file, one transaction, close = checkpoint);
- `load, shared connection`: the same within `connections.shared()` (loads of the
  `pipeline run` process itself reuse one connection and its catalog);
- its parts: opening + closing the file, the catalog read the old way (four
  `information_schema.columns` lookups per load) and the new way (one `duckdb_columns()`
  query, none with a shared connection), `conform` (pandas coercion to the table
  types), and the statements (delete + insert per table, the ingest log, commit).
"""

from __future__ import annotations

import datetime as dt
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

COHORTS, REPEATS = 200, 25


def _frames():
    import pandas as pd

    now = dt.datetime.now(dt.UTC).isoformat()
    estimates = pd.DataFrame(
        {"treatment": [f"t{i}" for i in range(5)], "estimate": [30.0] * 5, "ci_low": [20.0] * 5,
         "ci_high": [40.0] * 5, "program_name": "bench", "program_version": "1"}
    )  # fmt: skip
    checks = pd.DataFrame(
        {"check": [f"c{i}" for i in range(8)], "severity": "error", "passed": True,
         "detail": "", "program_name": "bench", "program_version": "1"}
    )  # fmt: skip
    runs = pd.DataFrame(
        [{"executor": "local", "job_id": "pid:1", "attempt": "a", "started_at": now,
          "finished_at": now, "exit_code": 0, "vcpu_seconds": 1.0, "memory_gib_seconds": 1.0,
          "cost_usd": 0.0, "log_uri": "/x", "tracking_url": "file:///x", "host": "h",
          "error": "", "program_name": "bench", "program_version": "1",
          "program_fingerprint": "f", "status": "succeeded"}]
    )  # fmt: skip
    return {"model_estimates": estimates, "validation_checks": checks, "pipeline_runs": runs}


def _median(fn: Callable[[int], object], n: int = REPEATS) -> float:
    times = []
    for i in range(n):
        started = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def run() -> dict[str, float]:
    from pipeline.warehouse import connections
    from pipeline.warehouse.duckdb import STAGING, DuckDBWarehouse
    from pipeline.warehouse.schema import conform

    tables = _frames()
    date = dt.date(2026, 6, 1)
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        warehouse = DuckDBWarehouse(f"duckdb://{Path(tmp) / 'w.duckdb'}")
        with connections.shared():
            for i in range(COHORTS):
                warehouse.replace(date, f"base-{i:04d}", tables)
        own = _median(lambda i: warehouse.replace(date, f"own-{i}", tables))
        with connections.shared():
            warehouse.replace(date, "warm", tables)
            shared = _median(lambda i: warehouse.replace(date, f"shared-{i}", tables))

        def open_close(_i: int) -> None:
            warehouse.connect().close()

        opening = _median(open_close)
        con = warehouse.connect()
        try:
            old_catalog = _median(
                lambda _i: [
                    con.execute(
                        "SELECT table_schema, table_name, column_name, data_type "
                        "FROM information_schema.columns WHERE table_schema IN (?, ?)",
                        [STAGING, "published"],
                    ).fetchall(),
                    *(warehouse._columns(con, STAGING, t) for t in tables),
                ]
            )
            new_catalog = _median(lambda _i: warehouse._catalog(con))
        finally:
            con.close()
        conforming = _median(
            lambda _i: [conform(n, f, run_date=date, cohort="c") for n, f in tables.items()]
        )
    return {
        "cohorts already loaded": COHORTS,
        "load, own connection (forked IngestResults)_s": round(own, 4),
        "load, shared connection (pipeline run process)_s": round(shared, 4),
        "part: open + close (checkpoint) of the file_s": round(opening, 4),
        "part: catalog, 4 information_schema lookups (before)_s": round(old_catalog, 4),
        "part: catalog, one duckdb_columns() (now; cached when shared)_s": round(new_catalog, 4),
        "part: conform (pandas coercion)_s": round(conforming, 4),
        "part: statements + commit (shared load - conform)_s": round(shared - conforming, 4),
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
