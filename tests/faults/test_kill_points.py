"""A delivery SIGKILLed at 22 points and simply run again ends as if never killed.

Kill points are chained: each run of a delivery is killed at the next point, later in
the delivery than the previous one, so every point is reached from the state the
previous kill left (the chain covers cleansing, every model state, validation, and
both warehouses' loads) and one delivery pays for many kills. After every kill no
process of the delivery is left; after the final plain run the warehouse equals an
uninterrupted delivery's (``comparable``: no timing or id columns), every cohort's
program ran to its end exactly once, and ``pipeline_runs`` holds one succeeded row per
cohort.
"""

from __future__ import annotations

import time
from pathlib import Path

import duckdb
import pytest
from pytest_httpserver import HTTPServer

from pipeline.warehouse.schema import INGEST_LOG, TABLES
from tests.faults.conftest import Delivery, comparable, make_delivery
from tests.warehouse.bqfake import FakeBigQuery, _qualified

MODEL = "model/*/*"
# (kind, where): "fault" = PIPELINE_FAULT point, "trigger" = kill when a new file matching
# the glob (below the run date) appears.
DUCKDB_CHAIN = [
    # the pin lands milliseconds before the cleansed files: a watcher could come too late
    ("fault", "cleanse.pinned"),
    ("fault", "cleanse.cohort"),
    ("trigger", "cleanse/summary.json"),
    ("trigger", f"{MODEL}/attempts/*/job.json"),
    ("trigger", f"{MODEL}/attempts/*/input.csv"),
    # The program's outputs are there, the manifest is not (the wrapper writes it within
    # milliseconds: no file watcher from outside gets in between).
    ("fault", "wrapper.outputs"),
    # Named points where the next file lands within milliseconds (a watcher from outside
    # can come too late on a loaded machine, and then the next point is never reached).
    ("fault", "wrapper.manifest"),
    ("fault", "collect.attempt-run"),
    ("fault", "collect.results"),
    ("fault", "collect.done"),
    ("trigger", "validate/*/*/checks.parquet"),
    # Loads: a killed run never gets past its first load (an embedded DuckDB takes one
    # writer at a time), so each of these is reached whatever order luigi picks.
    ("fault", "duckdb.load"),
    ("fault", "ingest.loaded"),
    ("fault", "duckdb.load"),
    ("fault", "ingest.loaded"),
    ("trigger", "ingest/*/*/*.json"),
]
BIGQUERY_CHAIN = [
    ("fault", "collect.attempt-run"),
    ("fault", "bigquery.load"),
    ("fault", "ingest.loaded"),
    ("fault", "bigquery.load"),
    ("fault", "ingest.loaded"),
    ("trigger", "ingest/*/*/*.json"),
]
NAMES = [*TABLES, INGEST_LOG.name]


def kill_and_rerun(delivery: Delivery, chain: list[tuple[str, str]]) -> None:
    for kind, where in chain:
        started = time.monotonic()
        code = delivery.run(**{kind: where})
        print(f"{kind} {where}: {code} after {time.monotonic() - started:.1f}s")
        assert code == -9, (
            f"the run meant to die at {kind} {where} ended with {code}:\n"
            f"{delivery.last_output[-3000:]}"
        )
        delivery.wait_no_leftovers()
    code = delivery.run()
    assert code == 0, delivery.last_output[-3000:]
    delivery.wait_no_leftovers()
    assert delivery.program_runs() == {c: 1 for c in delivery.codes}


def duckdb_tables(path: Path) -> dict[str, list[tuple]]:
    with duckdb.connect(str(path), read_only=True) as con:
        listed = con.execute("SELECT table_name FROM information_schema.tables").fetchall()
        present = {name for (name,) in listed}
        return {
            n: comparable(n, con.execute(f"SELECT * FROM {n}").df()) for n in NAMES if n in present
        }


def test_duckdb_delivery_killed_at_every_point(tmp_path: Path) -> None:
    base = make_delivery(tmp_path / "base", "")
    base.warehouse = f"duckdb://{base.home / 'w.duckdb'}"
    assert base.run() == 0, base.last_output[-3000:]
    killed = make_delivery(tmp_path / "killed", "")
    killed.warehouse = f"duckdb://{killed.home / 'w.duckdb'}"
    kill_and_rerun(killed, DUCKDB_CHAIN)
    expected, got = duckdb_tables(base.home / "w.duckdb"), duckdb_tables(killed.home / "w.duckdb")
    assert set(got) == set(expected)
    for name in expected:
        assert got[name] == expected[name], name
    runs = (
        duckdb.connect(str(killed.home / "w.duckdb"), read_only=True)
        .execute("SELECT cohort, status, count(*) FROM pipeline_runs GROUP BY ALL ORDER BY ALL")
        .fetchall()
    )
    assert {(c, n) for c, s, n in runs if s == "succeeded"} == {(c, 1) for c in killed.codes}
    assert {s for _c, s, _n in runs} <= {"succeeded", "abandoned"}


def test_a_run_killed_while_it_creates_the_duckdb_file_leaves_none(tmp_path: Path) -> None:
    """The first load of a first delivery creates the warehouse file (the survey's load,
    early in the run). A run killed while DuckDB wrote the new file's header left an empty
    file that no later run could open; killed there now, it leaves no file (a separate
    delivery: where the chain above is, the file exists already)."""
    delivery = make_delivery(tmp_path, "")
    delivery.warehouse = f"duckdb://{delivery.home / 'w.duckdb'}"
    assert delivery.run(fault="duckdb.create") == -9, delivery.last_output[-3000:]
    delivery.wait_no_leftovers()
    assert not (delivery.home / "w.duckdb").exists()
    assert delivery.run() == 0, delivery.last_output[-3000:]
    with duckdb.connect(str(delivery.home / "w.duckdb"), read_only=True) as con:
        runs = con.execute("SELECT cohort FROM pipeline_runs WHERE status = 'succeeded'")
        assert sorted(c for (c,) in runs.fetchall()) == sorted(delivery.codes)


@pytest.fixture
def bigquery(httpserver: HTTPServer) -> FakeBigQuery:
    return FakeBigQuery(httpserver)


def bigquery_tables(fake: FakeBigQuery, dataset: str) -> dict[str, list[tuple]]:
    present = {t for (_p, d, t) in fake.tables if d == dataset}
    tables = {}
    for n in NAMES:
        if n in present:
            sql = f"SELECT * FROM {_qualified('test-project', dataset, n)}"
            tables[n] = comparable(n, fake.db.sql(sql).df())
    return tables


def test_bigquery_delivery_killed_during_loads(tmp_path: Path, bigquery: FakeBigQuery) -> None:
    endpoint = {"PIPELINE_BIGQUERY_ENDPOINT": bigquery.url}
    base = make_delivery(tmp_path / "base", "bigquery://test-project/base", **endpoint)
    assert base.run() == 0, base.last_output[-3000:]
    killed = make_delivery(tmp_path / "killed", "bigquery://test-project/survey", **endpoint)
    kill_and_rerun(killed, BIGQUERY_CHAIN)
    expected, got = bigquery_tables(bigquery, "base"), bigquery_tables(bigquery, "survey")
    assert set(got) == set(expected) and expected
    for name in expected:
        assert got[name] == expected[name], name
