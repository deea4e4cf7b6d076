"""Backend semantics, the same tests against DuckDB (a real file) and BigQuery (the real
client against the local fake, which keeps its data in DuckDB and runs the jobs' SQL):
replace per (run_date, cohort), additive schemas, the ingest log, approval and
publication, the clients' views and the QA checks."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from pipeline.errors import WarehouseError
from pipeline.warehouse import STATUS_COLUMNS, Warehouse
from pipeline.warehouse.qa import Thresholds, failures, run_qa
from tests.warehouse.helpers import estimates, results, survey

D0, D1 = dt.date(2026, 10, 22), dt.date(2026, 11, 22)


def select(wh: Warehouse, sql: str, **params) -> list[tuple]:
    frame = wh.query(sql.replace("{published}", wh.published_dataset), params)
    return [tuple(None if pd.isna(v) else v for v in row) for row in frame.itertuples(index=False)]


def ingest(wh: Warehouse, date: dt.date, cohorts: dict[str, list[float]]) -> None:
    wh.replace(date, None, survey({c: 3 for c in cohorts}))
    for cohort, values in cohorts.items():
        wh.replace(date, cohort, results(values))


def test_reingest_replaces_only_its_cohort(warehouse: Warehouse) -> None:
    warehouse.replace(D1, "a", results([1, 2]))
    warehouse.replace(D1, "b", results([3, 4, 5]))
    warehouse.replace(D1, "a", results([7, 8]))
    got = select(
        warehouse,
        "SELECT cohort, COUNT(*), SUM(estimate) FROM model_estimates GROUP BY cohort "
        "ORDER BY cohort",
    )
    assert got == [("a", 2, 15.0), ("b", 3, 12.0)]
    # tracking_url joined the contract later: loads without it get NULLs.
    assert select(warehouse, "SELECT COUNT(tracking_url) FROM pipeline_runs") == [(0,)]
    assert select(
        warehouse, "SELECT cohort, COUNT(*) FROM pipeline_runs GROUP BY 1 ORDER BY 1"
    ) == [
        ("a", 1),
        ("b", 1),
    ]


def test_date_level_replace_keeps_other_dates_and_replaces_every_cohort(
    warehouse: Warehouse,
) -> None:
    warehouse.replace(D0, None, survey({"a": 2}))
    warehouse.replace(D1, None, survey({"a": 2, "b": 3}))
    warehouse.replace(D1, None, survey({"a": 4}))  # b is gone from the new export
    got = select(
        warehouse,
        "SELECT run_date, cohort, COUNT(*) FROM survey_responses GROUP BY 1, 2 ORDER BY 1, 2",
    )
    assert got == [(D0, "a", 2), (D1, "a", 4)]


def test_schema_evolves_additively(warehouse: Warehouse) -> None:
    warehouse.replace(D1, "a", {"model_estimates": estimates([1])})
    warehouse.replace(D1, "b", {"model_estimates": estimates([2], n_respondents=[40])})
    got = select(warehouse, "SELECT cohort, n_respondents FROM model_estimates ORDER BY cohort")
    assert got == [("a", None), ("b", 40)]


def test_refused_load_changes_nothing(warehouse: Warehouse) -> None:
    warehouse.replace(D1, "a", results([1, 2]))
    with pytest.raises(WarehouseError, match=r"model_estimates\.estimate: cannot convert"):
        warehouse.replace(D1, "a", {"model_estimates": estimates([9]).assign(estimate=["x"])})
    with pytest.raises(WarehouseError, match="validation_checks: load is missing columns"):
        warehouse.replace(
            D1,
            "a",
            {
                "model_estimates": estimates([5]),
                "validation_checks": pd.DataFrame({"check": ["x"]}),
            },
        )
    assert select(warehouse, "SELECT estimate FROM model_estimates ORDER BY 1") == [(1.0,), (2.0,)]


def test_publication_status_lists_ingested_cohorts(warehouse: Warehouse) -> None:
    empty = warehouse.publication_status(D1)
    assert list(empty.columns) == list(STATUS_COLUMNS) and empty.empty
    ingest(warehouse, D1, {"b": [1, 2], "a": [3, 4]})
    status = warehouse.publication_status(D1)
    assert list(status.columns) == list(STATUS_COLUMNS)
    assert list(status["cohort"]) == ["a", "b"]
    assert status["ingested_at"].notna().all()
    assert (
        status[["approved_by", "approved_at", "program_version", "published_at"]]
        .isna()
        .all(axis=None)
    )
    assert warehouse.publication_status(D0).empty


def test_approve_publishes_one_cohort_with_the_sign_off(warehouse: Warehouse) -> None:
    ingest(warehouse, D1, {"a": [10, 20], "b": [30, 40]})
    approval = warehouse.approve(D1, "a", "Jane Doe")
    assert (approval.cohort, approval.approved_by, approval.program_version) == (
        "a",
        "Jane Doe",
        "1.0",
    )
    assert approval.rows == {
        "survey_responses": 3,
        "survey_rejections": 1,
        "model_estimates": 2,
        "validation_checks": 2,
        "pipeline_runs": 1,
        "cleansing_summary": 1,
        "survey_frame": 2,
    }
    for table, n in approval.rows.items():
        assert select(
            warehouse, f"SELECT cohort, COUNT(*) FROM `{{published}}.{table}` GROUP BY 1"
        ) == [("a", n)], table
    # The published responses keep the share_ columns that staging evolved.
    assert select(warehouse, "SELECT SUM(share_a) FROM `{published}.survey_responses`") == [
        (180.0,)
    ]
    status = warehouse.publication_status(D1).set_index("cohort")
    assert status.loc["a", "approved_by"] == "Jane Doe"
    assert status.loc["a", "program_version"] == "1.0"
    assert status.loc["a", "published_at"] >= status.loc["a", "ingested_at"]
    assert pd.isna(status.loc["b", "approved_by"]) and pd.isna(status.loc["b", "published_at"])


def test_clients_views_show_signed_off_rows_only(warehouse: Warehouse) -> None:
    ingest(warehouse, D0, {"a": [1, 2]})
    warehouse.approve(D0, "a", "Jane")
    ingest(warehouse, D1, {"a": [5, 6], "b": [7, 8]})
    warehouse.approve(D1, "a", "Ken")
    got = select(
        warehouse,
        "SELECT run_date, cohort, treatment, estimate, approved_by "
        "FROM `{published}.v_latest_estimates` ORDER BY treatment",
    )
    assert got == [(D1, "a", "t0", 5.0, "Ken"), (D1, "a", "t1", 6.0, "Ken")]
    assert select(
        warehouse, "SELECT run_date, cohort, approved_by FROM `{published}.v_deliveries` ORDER BY 1"
    ) == [(D0, "a", "Jane"), (D1, "a", "Ken")]
    assert select(warehouse, "SELECT COUNT(*) FROM `{published}.v_estimates`") == [(4,)]
    columns = warehouse.query(
        f"SELECT * FROM `{warehouse.published_dataset}.v_responses` LIMIT 1"
    ).columns
    assert "respondent_key" in columns and "source_file" not in columns


def test_reapproval_after_reingest_replaces_published_rows(warehouse: Warehouse) -> None:
    ingest(warehouse, D1, {"a": [1, 2]})
    warehouse.approve(D1, "a", "Jane")
    warehouse.replace(D1, "a", results([3, 4, 5], version="1.1"))
    status = warehouse.publication_status(D1).iloc[0]
    assert status["ingested_at"] > status["published_at"]  # re-ingested since the sign-off
    # Until approved again, clients keep the signed-off numbers.
    assert select(warehouse, "SELECT SUM(estimate) FROM `{published}.model_estimates`") == [(3.0,)]
    approval = warehouse.approve(D1, "a", "Ken")
    assert approval.program_version == "1.1"
    assert select(
        warehouse, "SELECT COUNT(*), SUM(estimate) FROM `{published}.model_estimates`"
    ) == [(3, 12.0)]
    assert select(warehouse, "SELECT COUNT(*) FROM `{published}.approvals`") == [(2,)]
    assert warehouse.publication_status(D1).iloc[0]["approved_by"] == "Ken"


def test_approve_refuses_what_is_not_ready_and_publishes_nothing(warehouse: Warehouse) -> None:
    with pytest.raises(WarehouseError, match="cohort a of 2026-11-22 is not ingested"):
        warehouse.approve(D1, "a", "Jane")
    warehouse.replace(D1, "a", results([1, 2]))
    with pytest.raises(WarehouseError, match="survey data of 2026-11-22 is not ingested"):
        warehouse.approve(D1, "a", "Jane")
    warehouse.replace(D1, None, survey({"a": 3, "b": 3}))
    warehouse.replace(D1, "b", results([], passed=False))
    with pytest.raises(
        WarehouseError,
        match=r"cohort b of 2026-11-22 cannot be approved: its error checks "
        r"failed \(not_empty: 0 result rows\)",
    ):
        warehouse.approve(D1, "b", "Jane")
    with pytest.raises(WarehouseError, match="--by must name who signs off"):
        warehouse.approve(D1, "a", "  ")
    for table in ("model_estimates", "survey_responses", "approvals"):
        assert select(warehouse, f"SELECT COUNT(*) FROM `{{published}}.{table}`") == [(0,)]
    assert warehouse.publication_status(D1)["approved_by"].isna().all()


def test_qa_passes_on_consistent_data(warehouse: Warehouse) -> None:
    ingest(warehouse, D1, {"a": [10, 20], "b": [30, 40]})
    qa = run_qa(warehouse, D1, Thresholds(0.2, 0.5))
    assert list(qa.columns) == ["check", "cohort", "severity", "passed", "detail"]
    assert failures(qa, strict=True).empty, qa.to_string()
    rows = {(r.check, r.cohort): r.detail for r in qa.itertuples()}
    assert rows[("row_counts", "a")] == "responses 3 (cleansing: 3), rejections 1 (cleansing: 1)"
    assert rows[("missing_segments", "a")] == "all 1 segments have responses"
    assert rows[("estimates_vs_previous", "b")] == (
        "no previous published delivery of this cohort to compare with"
    )
    assert rows[("cohort_coverage", "b")] == "3 responses, 2 estimates"


def test_qa_finds_count_mismatches_missing_estimates_and_segments(warehouse: Warehouse) -> None:
    tables = survey({"a": 3, "b": 2})
    # Loaded responses lose a row the cleansing summary counted: an error.
    tables["survey_responses"] = tables["survey_responses"].iloc[1:]
    tables["survey_frame"].loc[tables["survey_frame"]["region"] == "kansai", "n_physicians"] = 50
    warehouse.replace(D1, None, tables)
    warehouse.replace(D1, "b", results([1, 2]))
    qa = run_qa(warehouse, D1, Thresholds(0.2, 0.5))
    failed = {(r.check, r.cohort): (r.severity, r.detail) for r in qa[~qa["passed"]].itertuples()}
    assert failed[("row_counts", "a")] == (
        "error",
        "responses 2 (cleansing: 3), rejections 1 (cleansing: 1)",
    )
    assert failed[("cohort_coverage", "a")][0] == "warning"
    assert "no estimates ingested yet" in failed[("cohort_coverage", "a")][1]
    assert failed[("missing_segments", "b")] == (
        "warning",
        "1 of 2 segments without responses (50 physicians): internal x kansai",
    )
    assert list(failures(qa)[["check", "cohort"]].itertuples(index=False, name=None)) == [
        ("row_counts", "a")
    ]


def test_qa_compares_estimates_with_the_previous_published_delivery(
    warehouse: Warehouse,
) -> None:
    ingest(warehouse, D0, {"a": [10, 20], "b": [10, 20]})
    warehouse.approve(D0, "a", "Jane")
    warehouse.approve(D0, "b", "Jane")
    ingest(warehouse, D1, {"a": [11, 20], "b": [10, 50]})
    qa = run_qa(warehouse, D1, Thresholds(0.2, 0.5)).set_index(["check", "cohort"])
    a = qa.loc[("estimates_vs_previous", "a")]
    assert bool(a["passed"]) and a["severity"] == "warning"
    b = qa.loc[("estimates_vs_previous", "b")]
    assert not b["passed"] and b["severity"] == "error"
    assert b["detail"].startswith("1 of 2 treatments changed by more than 20")
    assert "since 2026-10-22; largest: t1 20" in b["detail"] and "150" in b["detail"]
    # A looser threshold turns the error into a warning.
    loose = run_qa(warehouse, D1, Thresholds(0.2, 2.0)).set_index(["check", "cohort"])
    assert loose.loc[("estimates_vs_previous", "b"), "severity"] == "warning"


def test_a_reingest_after_the_facts_were_read_is_not_published(warehouse: Warehouse) -> None:
    """`pipeline approve` reads what it decides on once for the date, then publishes the
    cohorts together: a cohort re-ingested in between is refused by the publish
    transaction, which checks again; the others are published without it (the
    transaction is tried again in halves) and nothing of it is."""
    ingest(warehouse, D1, {"a": [1, 2], "b": [3]})
    facts = warehouse.approval_facts(D1)
    checked = [warehouse.check_approval(D1, c, "Jane", facts=facts) for c in ("a", "b")]
    warehouse.replace(D1, "a", results([3, 4, 5], version="1.1"))
    refused, published = warehouse.publish(checked)
    assert isinstance(refused, WarehouseError)
    assert "cohort a was re-ingested while being approved" in str(refused)
    assert published == checked[1] and published.rows["model_estimates"] == 1
    assert select(warehouse, "SELECT cohort FROM `{published}.approvals`") == [("b",)]
    with pytest.raises(WarehouseError, match="cohort a was re-ingested while being approved"):
        warehouse.approve(D1, "a", "Jane", facts=facts)
    assert warehouse.approve(D1, "a", "Jane").program_version == "1.1"  # read again
    assert select(warehouse, "SELECT COUNT(*) FROM `{published}.model_estimates`") == [(4,)]
