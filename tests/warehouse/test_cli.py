"""``pipeline approve`` and ``pipeline qa``, run as the CLI runs them (in-process), on a
DuckDB warehouse and on BigQuery (the local fake); and QA on data from the real
cleansing of a sample export."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.core import rawdata
from pipeline.core.cleanse import CleanseRules, cleanse
from pipeline.sampledata import generate
from pipeline.warehouse import open_warehouse
from pipeline.warehouse.qa import Thresholds, check_files, failures, run_qa
from pipeline.warehouse.schema import survey_reference_tables
from tests.warehouse.bqfake import FakeBigQuery
from tests.warehouse.helpers import BQ_URI, DATASET, PROJECT, results, survey

D1 = dt.date(2026, 11, 22)


@pytest.fixture
def uri(tmp_path: Path, pipeline_home: Path) -> str:
    """A DuckDB warehouse with cohorts a (good) and b (its error check failed)."""
    uri = f"duckdb://{tmp_path / 'w.duckdb'}"
    wh = open_warehouse(uri)
    wh.replace(D1, None, survey({"a": 3, "b": 2}))
    wh.replace(D1, "a", results([10, 20]))
    wh.replace(D1, "b", results([], passed=False))
    return uri


def test_approve_publishes_and_refuses_with_reasons(
    uri: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["approve", "--run-date", "2026-11-22", "--by", "Jane Doe", "--warehouse", uri])
    out, err = capsys.readouterr()
    assert code == 1  # b was refused
    assert "a                    approved (est 1.0), published: 3 survey_responses" in out
    assert "1 of 2 cohort(s) published to published" in out
    assert "b                    REFUSED: cohort b of 2026-11-22 cannot be approved" in err
    status = open_warehouse(uri).publication_status(D1).set_index("cohort")
    assert status.loc["a", "approved_by"] == "Jane Doe"
    assert status.loc["b", "published_at"] is None or str(status.loc["b", "published_at"]) == "NaT"


def test_approve_one_cohort_and_unknown_ones(uri: str, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["approve", "--run-date", "2026-11-22", "--by", "Ken", "--warehouse", uri]
    assert main([*args, "--cohort", "a"]) == 0
    assert main([*args, "--cohort", "zz"]) == 1
    assert "cohort zz of 2026-11-22 is not ingested" in capsys.readouterr().err
    empty = ["approve", "--run-date", "2026-01-01", "--by", "Ken", "--warehouse", uri]
    assert main(empty) == 2
    assert "nothing of 2026-01-01 is ingested" in capsys.readouterr().err


def test_qa_prints_a_table(uri: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["qa", "--run-date", "2026-11-22", "--warehouse", uri])
    out = capsys.readouterr().out
    assert code == 0  # b has no estimates yet: a warning only
    lines = out.splitlines()
    assert lines[0] == f"QA of 2026-11-22 in {uri}"
    assert lines[1].split() == ["CHECK", "COHORT", "RESULT", "DETAIL"]
    assert any(line.split()[:3] == ["row_counts", "a", "ok"] for line in lines)
    assert any(line.split()[:3] == ["cohort_coverage", "b", "warn"] for line in lines)
    assert lines[-1] == "8 checks: 0 failed, 1 warning(s)"
    # A response lost between cleansing and the warehouse fails QA.
    wh = open_warehouse(uri)
    tables = survey({"a": 3, "b": 2})
    wh.replace(D1, None, {**tables, "survey_responses": tables["survey_responses"].iloc[1:]})
    assert main(["qa", "--run-date", "2026-11-22", "--warehouse", uri]) == 1
    out = capsys.readouterr().out
    failed = [line.split(maxsplit=3) for line in out.splitlines() if " FAIL " in line]
    assert failed == [
        ["row_counts", "a", "FAIL", "responses 2 (cleansing: 3), rejections 1 (cleansing: 1)"]
    ]


def test_qa_json_and_thresholds(uri: str, capsys: pytest.CaptureFixture[str]) -> None:
    wh = open_warehouse(uri)
    wh.replace(D1, "b", results([1, 2]))
    code = main(["qa", "--run-date", "2026-11-22", "--warehouse", uri, "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["passed"] is True
    assert {c["check"] for c in report["checks"]} == {
        "cohort_coverage",
        "estimates_vs_previous",
        "missing_segments",
        "row_counts",
    }
    row = next(c for c in report["checks"] if c["check"] == "row_counts" and c["cohort"] == "a")
    assert row == {
        "check": "row_counts",
        "cohort": "a",
        "severity": "error",
        "passed": True,
        "detail": "responses 3 (cleansing: 3), rejections 1 (cleansing: 1)",
    }
    bad = ["qa", "--run-date", "2026-11-22", "--warehouse", uri, "--warn-change", "0.9"]
    assert main([*bad, "--fail-change", "0.1"]) == 2
    assert "need 0 <= warn_change" in capsys.readouterr().err


def test_qa_strict_fails_on_warnings(uri: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["qa", "--run-date", "2026-11-22", "--warehouse", uri, "--strict"]) == 1
    assert "(strict: warnings fail)" in capsys.readouterr().out


def test_commands_work_against_bigquery(bq: FakeBigQuery, capsys) -> None:
    wh = open_warehouse(BQ_URI)
    wh.replace(D1, None, survey({"a": 3}))
    wh.replace(D1, "a", results([10, 20]))
    assert main(["qa", "--run-date", "2026-11-22", "--warehouse", BQ_URI]) == 0
    assert "row_counts" in capsys.readouterr().out
    args = ["approve", "--run-date", "2026-11-22", "--by", "Jane", "--warehouse", BQ_URI]
    assert main(args) == 0
    assert "published to test-project.survey_published" in capsys.readouterr().out


def test_qa_files_ship_with_the_package() -> None:
    names = check_files()
    assert names == [
        "qa/cohort_coverage.sql",
        "qa/estimates_vs_previous.sql",
        "qa/missing_segments.sql",
        "qa/row_counts.sql",
    ]


def test_row_counts_match_a_real_cleansing(tmp_path: Path) -> None:
    generate(tmp_path / "raw", cohorts=3, respondents=200, seed=3)
    export = rawdata.read_raw_export(tmp_path / "raw")
    cleansed = cleanse(export, CleanseRules(), b"test-key")
    wh = open_warehouse(f"duckdb://{tmp_path / 'w.duckdb'}")
    wh.replace(
        D1,
        None,
        {
            "survey_responses": cleansed.cleansed,
            "survey_rejections": cleansed.rejections,
            **survey_reference_tables(cleansed.summary, export.frame),
        },
    )
    qa = run_qa(wh, D1, Thresholds())
    counts = qa[qa["check"] == "row_counts"]
    assert len(counts) == len(cleansed.summary["cohorts"]) + 1  # + rejections of no cohort
    assert counts["passed"].all(), counts.to_string()
    assert failures(qa).empty


def test_approving_a_delivery_on_bigquery_queries_once_per_date_not_per_cohort(
    bq: FakeBigQuery, capsys
) -> None:
    """What approve decides on (variants, checks, row counts, program builds) is read in
    a few queries for the date; then the cohorts are published in one transaction."""
    wh = open_warehouse(BQ_URI)
    good = ["a", "b", "c", "d"]
    wh.replace(D1, None, survey(dict.fromkeys([*good, "e"], 2)))
    for code in good:
        wh.replace(D1, code, results([10, 20]))
    wh.replace(D1, "e", results([], passed=False))
    before = len(bq.queries())
    args = ["approve", "--run-date", "2026-11-22", "--by", "Jane", "--warehouse", BQ_URI]
    assert main(args) == 1  # e is refused
    out = capsys.readouterr()
    assert "4 of 5 cohort(s) published" in out.out
    assert "e                    REFUSED: cohort e of 2026-11-22 cannot be approved" in out.err
    queries = bq.queries()[before:]
    publishes = [q for q in queries if q.startswith("BEGIN TRANSACTION;")]
    assert len(publishes) == 1  # the four that passed, together
    # The rest is per command: the cohorts, the facts, the builds, the clients' views.
    others = [q for q in queries if q not in publishes]
    assert len(others) <= 6, others
    assert not [q for q in others if "@cohort" in q]
    estimates = f'"{PROJECT}"."{DATASET}_published".model_estimates'
    assert bq.sql(f"SELECT cohort, COUNT(*) FROM {estimates} GROUP BY 1 ORDER BY 1") == [
        (code, 2) for code in good
    ]
