"""The DuckDB warehouse, for real: replace semantics, evolution, atomicity."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from pipeline.errors import WarehouseError
from pipeline.warehouse import open_warehouse

D1 = dt.date(2026, 11, 22)


def estimates(values: list[float], **extra) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "treatment": [f"t{i}" for i in range(len(values))],
            "estimate": values,
            "ci_low": [v - 1 for v in values],
            "ci_high": [v + 1 for v in values],
            "program_name": "est",
            "program_version": "1",
            **extra,
        }
    )


def rows(path: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(sql).fetchall()


def test_reingest_replaces_only_its_cohort(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    wh = open_warehouse(f"duckdb://{path}")
    wh.replace(D1, "a", {"model_estimates": estimates([1, 2])})
    wh.replace(D1, "b", {"model_estimates": estimates([3, 4, 5])})
    wh.replace(D1, "a", {"model_estimates": estimates([7, 8])})
    got = rows(path, "SELECT cohort, count(*), sum(estimate) FROM model_estimates "
                     "GROUP BY cohort ORDER BY cohort")  # fmt: skip
    assert got == [("a", 2, 15.0), ("b", 3, 12.0)]
    assert rows(path, "SELECT DISTINCT run_date FROM model_estimates") == [(D1,)]


def test_date_level_replace_keeps_other_dates(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    wh = open_warehouse(f"duckdb://{path}")
    d0 = dt.date(2026, 11, 1)
    for date in (d0, D1, D1):
        wh.replace(date, None, {"model_estimates": estimates([1]).assign(cohort="x")})
    assert rows(path, "SELECT run_date, count(*) FROM model_estimates GROUP BY 1 ORDER BY 1") == [
        (d0, 1),
        (D1, 1),
    ]


def test_schema_evolves_additively(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    wh = open_warehouse(f"duckdb://{path}")
    wh.replace(D1, "a", {"model_estimates": estimates([1])})
    wh.replace(D1, "b", {"model_estimates": estimates([2], n_respondents=[40])})
    assert rows(path, "SELECT cohort, n_respondents FROM model_estimates ORDER BY cohort") == [
        ("a", None),
        ("b", 40),
    ]


def test_failed_load_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    wh = open_warehouse(f"duckdb://{path}")
    wh.replace(D1, "a", {"model_estimates": estimates([1, 2])})
    bad = estimates([9]).assign(estimate=["not a number"])
    with pytest.raises(WarehouseError, match=r"model_estimates\.estimate: cannot convert"):
        wh.replace(D1, "a", {"model_estimates": bad})
    with pytest.raises(WarehouseError, match="missing columns ci_high"):
        wh.replace(D1, "a", {"model_estimates": estimates([9]).drop(columns=["ci_high"])})
    assert rows(path, "SELECT count(*) FROM model_estimates") == [(2,)]


def test_multi_table_load_is_one_transaction(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    wh = open_warehouse(f"duckdb://{path}")
    wh.replace(D1, "a", {"model_estimates": estimates([1])})
    with pytest.raises(WarehouseError):
        wh.replace(
            D1,
            "a",
            {
                "model_estimates": estimates([5, 6]),  # would succeed alone
                "validation_checks": pd.DataFrame({"check": ["x"]}),  # missing columns
            },
        )
    assert rows(path, "SELECT estimate FROM model_estimates") == [(1.0,)]


def test_query_speaks_bigquery_sql(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    wh = open_warehouse(f"duckdb://{path}")
    wh.replace(D1, "a", {"model_estimates": estimates([1, 2])})
    got = wh.query(
        "SELECT cohort, COUNTIF(estimate > 1) AS big, SAFE_DIVIDE(SUM(estimate), 0) AS r "
        "FROM model_estimates WHERE run_date = DATE '2026-11-22' GROUP BY cohort"
    )
    assert len(got) == 1
    assert got.loc[0, "cohort"] == "a" and got.loc[0, "big"] == 1
    assert pd.isna(got.loc[0, "r"])  # SAFE_DIVIDE by zero is NULL, not an error


def test_unknown_uri_is_refused() -> None:
    from pipeline.errors import ConfigError

    with pytest.raises(ConfigError, match="unsupported warehouse URI"):
        open_warehouse("mysql://x")


def test_published_schema_lives_in_the_same_file(tmp_path: Path) -> None:
    from tests.warehouse.helpers import results, survey

    path = tmp_path / "w.duckdb"
    wh = open_warehouse(f"duckdb://{path}")
    wh.replace(D1, None, survey({"a": 2}))
    wh.replace(D1, "a", results([1, 2]))
    assert rows(path, "SELECT count(*) FROM published.model_estimates") == [(0,)]
    wh.approve(D1, "a", "Jane")
    assert rows(path, "SELECT count(*) FROM published.model_estimates") == [(2,)]
    assert rows(path, "SELECT cohort, approved_by FROM published.v_deliveries") == [("a", "Jane")]
    views = rows(
        path,
        "SELECT view_name FROM duckdb_views() WHERE schema_name = 'published' ORDER BY 1",
    )
    assert [v for (v,) in views] == [
        "v_deliveries",
        "v_estimates",
        "v_latest_estimates",
        "v_responses",
        "v_validation_checks",
    ]


def test_a_warehouse_from_before_variants_evolves_on_the_next_load(tmp_path) -> None:
    """Tables created before the variant and manifest columns existed gain them (old rows
    read NULL), and the first variant load of a cohort replaces its pre-variant rows."""
    import datetime as dt

    from pipeline.warehouse import open_warehouse
    from pipeline.warehouse.schema import MANIFEST_COLUMNS
    from tests.warehouse.helpers import results, survey

    date = dt.date(2026, 11, 22)
    wh = open_warehouse(f"duckdb://{tmp_path / 'old.duckdb'}")
    wh.replace(date, None, survey({"a": 2, "b": 2}))
    wh.replace(date, "a", results([1, 2]))
    wh.replace(date, "b", results([3]))
    added = {
        "model_estimates": ["program_fingerprint", "variant"],
        "validation_checks": ["program_fingerprint", "variant"],
        "pipeline_runs": ["variant", *(n for n, _ in MANIFEST_COLUMNS)],
        "ingest_log": ["variant"],
    }
    with duckdb.connect(str(tmp_path / "old.duckdb")) as con:  # the old layout
        for table, columns in added.items():
            for column in columns:
                con.execute(f'ALTER TABLE main.{table} DROP COLUMN "{column}"')
                if table != "ingest_log":
                    con.execute(f'ALTER TABLE published.{table} DROP COLUMN "{column}"')
        for column in ("program_fingerprint", "variant"):
            con.execute(f'ALTER TABLE published.approvals DROP COLUMN "{column}"')
    wh.replace(date, "a", results([5]), variant="est-1.0-x")
    got = wh.query(
        "SELECT cohort, COALESCE(variant, '(none)'), estimate FROM model_estimates "
        "ORDER BY cohort, estimate"
    )
    assert [tuple(r) for r in got.itertuples(index=False)] == [
        ("a", "est-1.0-x", 5.0),
        ("b", "(none)", 3.0),
    ]
    # b, never loaded as a variant, is still approvable as it was.
    assert wh.approve(date, "b", "Jane").variant == ""
    assert wh.approve(date, "a", "Jane").variant == "est-1.0-x"


def test_loads_of_a_run_share_one_connection_and_its_catalog(tmp_path: Path) -> None:
    from pipeline.warehouse import connections

    path = tmp_path / "w.duckdb"
    wh = open_warehouse(f"duckdb://{path}")
    with connections.shared():
        wh.replace(D1, "a", {"model_estimates": estimates([1, 2])})
        (entry,) = connections._entries.values()
        # A new result column on the next load: the cached catalog learns it.
        wh.replace(D1, "b", {"model_estimates": estimates([3], result_extra=[9.0])})
        wh.replace(D1, "a", {"model_estimates": estimates([5], result_extra=[7.0])})
        assert list(connections._entries.values()) == [entry]
        assert "result_extra" in entry.catalog[("main", "model_estimates")]
        # A load failing in its transaction rolls back and forgets the catalog.
        with pytest.raises(duckdb.Error):
            wh.replace(D1, "c", {"model_estimates": estimates([1], result_extra=["x"])})
        assert entry.catalog is None
        wh.replace(D1, "c", {"model_estimates": estimates([6])})
    assert not connections._entries  # closed at the end: other processes get the file
    got = rows(path, "SELECT cohort, sum(estimate), sum(result_extra) FROM model_estimates "
                     "GROUP BY cohort ORDER BY cohort")  # fmt: skip
    assert got == [("a", 5.0, 7.0), ("b", 3.0, 9.0), ("c", 6.0, None)]


def test_the_survey_load_is_checkpointed_as_it_commits(tmp_path: Path) -> None:
    """The run's connection stays open while the programs run: the survey's load (every
    cohort's rows) goes into the file then, not into a WAL that readers of the file
    replay and that the run's end writes back; a cohort's load waits for the close."""
    from pipeline.warehouse import connections

    path = tmp_path / "w.duckdb"
    wal = tmp_path / "w.duckdb.wal"
    wh = open_warehouse(f"duckdb://{path}")
    with connections.shared():
        wh.replace(D1, "a", {"model_estimates": estimates([1, 2])})
        assert wal.exists() and wal.stat().st_size > 0  # a cohort's load: in the WAL
        wh.replace(D1, None, {"model_estimates": estimates([3]).assign(cohort="x")})
        assert connections._entries  # the connection is still open
        assert not wal.exists() or wal.stat().st_size == 0
    assert rows(path, "SELECT count(*) FROM model_estimates") == [(1,)]


@pytest.mark.parametrize("shared", [True, False], ids=["pipeline-run", "own-connections"])
def test_first_loads_from_many_threads_at_once_all_land(tmp_path: Path, shared: bool) -> None:
    """Cohorts that finish together ingest at once, from threads of one process (the run's
    workers, or the assistant's): into a new file, every one lands (DuckDB's optimistic
    transactions made all but one fail with "Catalog write-write conflict")."""
    import contextlib
    import threading

    from pipeline.warehouse import connections

    path = tmp_path / "w.duckdb"
    wh = open_warehouse(f"duckdb://{path}")
    cohorts = [f"c{i}" for i in range(8)]
    start, errors = threading.Barrier(len(cohorts)), []

    def load(cohort: str) -> None:
        start.wait()
        try:
            wh.replace(D1, cohort, {"model_estimates": estimates([1, 2])})
        except Exception as exc:  # reported by the assertion below
            errors.append(f"{cohort}: {exc}")

    with connections.shared() if shared else contextlib.nullcontext():
        threads = [threading.Thread(target=load, args=(c,)) for c in cohorts]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == []
    got = rows(path, "SELECT cohort, count(*) FROM model_estimates GROUP BY 1 ORDER BY 1")
    assert got == [(c, 2) for c in cohorts]


def test_a_new_warehouse_file_appears_whole_or_not_at_all(tmp_path: Path, monkeypatch) -> None:
    """DuckDB writes a new file's header after creating it: the file is made under a
    temporary name and linked into place whole, so a run killed in between leaves no file
    (tests/faults: the `duckdb.create` kill point) and nothing is left beside it."""
    path = tmp_path / "wh" / "w.duckdb"
    open_warehouse(f"duckdb://{path}").replace(D1, "a", {"model_estimates": estimates([1])})
    assert rows(path, "SELECT count(*) FROM model_estimates") == [(1,)]
    assert sorted(p.name for p in path.parent.iterdir()) == ["w.duckdb"]
    # On a file system without hard links (SMB, FAT) it is renamed into place instead.
    elsewhere = tmp_path / "nolinks" / "w.duckdb"
    monkeypatch.setattr(os, "link", lambda *_: (_ for _ in ()).throw(PermissionError(1, "no")))
    open_warehouse(f"duckdb://{elsewhere}").replace(D1, "a", {"model_estimates": estimates([2])})
    assert rows(elsewhere, "SELECT sum(estimate) FROM model_estimates") == [(2.0,)]
    assert sorted(p.name for p in elsewhere.parent.iterdir()) == ["w.duckdb"]
    # A file left empty by a run killed before that was made atomic says what to do.
    empty = tmp_path / "empty.duckdb"
    empty.touch()
    with pytest.raises(WarehouseError, match=r"the file is empty.*remove it and run again"):
        open_warehouse(f"duckdb://{empty}").replace(D1, "a", {"model_estimates": estimates([1])})
