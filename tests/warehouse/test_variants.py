"""Program variants in the warehouse, the same tests on DuckDB (a real file) and on
BigQuery (the real client against the local fake): each variant's rows side by side,
replace per (run_date, cohort, variant), the counts that ingest markers are checked
against, approval of one variant, and the comparison."""

from __future__ import annotations

import datetime as dt

import pytest

from pipeline.compare import compare
from pipeline.errors import WarehouseError
from pipeline.warehouse import Warehouse, open_warehouse
from tests.warehouse.bqfake import FakeBigQuery
from tests.warehouse.helpers import BQ_URI, results, survey
from tests.warehouse.test_semantics import select

D1 = dt.date(2026, 11, 22)
A, B = "est-1.0-aaaaaaaaaa", "est-1.0-bbbbbbbbbb"


def variant_results(values: list[float], fingerprint: str, *, cost: float = 0.0) -> dict:
    tables = results(values)
    for name in tables:
        tables[name] = tables[name].assign(program_fingerprint=fingerprint)
    tables["pipeline_runs"] = tables["pipeline_runs"].assign(cost_usd=cost)
    return tables


def test_variants_live_side_by_side_and_replace_only_themselves(warehouse: Warehouse) -> None:
    warehouse.replace(D1, "a", variant_results([1, 2], "aaaaaaaaaa"), variant=A)
    warehouse.replace(D1, "a", variant_results([3, 4, 5], "bbbbbbbbbb"), variant=B)
    warehouse.replace(D1, "b", variant_results([9], "aaaaaaaaaa"), variant=A)
    warehouse.replace(D1, "a", variant_results([7, 8], "aaaaaaaaaa"), variant=A)  # A again
    for table, per_row in (("model_estimates", 1), ("validation_checks", 2)):
        got = select(
            warehouse,
            f"SELECT cohort, variant, program_fingerprint, COUNT(*) FROM {table} "
            "GROUP BY 1, 2, 3 ORDER BY 1, 2",
        )
        expected = [("a", A, "aaaaaaaaaa"), ("a", B, "bbbbbbbbbb"), ("b", A, "aaaaaaaaaa")]
        counts = [2, 3, 1] if per_row == 1 else [2, 2, 2]
        assert got == [(*e, n) for e, n in zip(expected, counts, strict=True)], table
    assert select(
        warehouse,
        "SELECT variant, SUM(estimate) FROM model_estimates WHERE cohort = 'a' "
        "GROUP BY 1 ORDER BY 1",
    ) == [(A, 15.0), (B, 12.0)]
    assert select(
        warehouse, "SELECT cohort, variant, COUNT(*) FROM pipeline_runs GROUP BY 1, 2 ORDER BY 1, 2"
    ) == [("a", A, 1), ("a", B, 1), ("b", A, 1)]
    # The ingest log says which variant each load was.
    assert select(
        warehouse,
        "SELECT variant, COUNT(DISTINCT load_id) FROM ingest_log WHERE cohort = 'a' "
        "GROUP BY 1 ORDER BY 1",
    ) == [(A, 2), (B, 1)]


def test_a_variant_load_replaces_rows_loaded_before_variants(warehouse: Warehouse) -> None:
    warehouse.replace(D1, "a", results([1, 2]))  # an old warehouse: no variant
    warehouse.replace(D1, "a", variant_results([5], "aaaaaaaaaa"), variant=A)
    assert select(warehouse, "SELECT variant, estimate FROM model_estimates") == [(A, 5.0)]


def test_only_result_tables_of_one_cohort_load_per_variant(warehouse: Warehouse) -> None:
    with pytest.raises(WarehouseError, match="load per variant"):
        warehouse.replace(D1, None, survey({"a": 1}), variant=A)


def test_loaded_counts_tell_what_each_variant_holds(warehouse: Warehouse) -> None:
    assert warehouse.loaded_counts(D1).empty
    warehouse.replace(D1, None, survey({"a": 3}))
    warehouse.replace(D1, "a", variant_results([1, 2], "aaaaaaaaaa"), variant=A)
    warehouse.replace(D1, "a", variant_results([3], "bbbbbbbbbb"), variant=B)
    counts = {
        (r.cohort, r.variant, r.table_name): int(r.row_count)
        for r in warehouse.loaded_counts(D1).itertuples()
    }
    assert counts[("a", A, "model_estimates")] == 2
    assert counts[("a", B, "model_estimates")] == 1
    assert counts[("a", B, "pipeline_runs")] == 1
    assert counts[("a", "", "survey_responses")] == 3
    assert warehouse.loaded_counts(dt.date(2026, 1, 1)).empty


def test_threads_asking_what_is_loaded_at_once_share_one_query(bq: FakeBigQuery) -> None:
    """``pipeline status`` checks every cohort's ingest on sixteen threads: one BigQuery
    query job answers them all, not one each; a fresh answer is asked for again."""
    import threading

    from pipeline.tasks.ingest import forget_loaded, loaded

    open_warehouse(BQ_URI).replace(D1, None, survey({"a": 3}))
    forget_loaded()
    before = len(bq.job_inserts("query"))
    start, answers = threading.Barrier(8), []

    def ask() -> None:
        start.wait()
        answers.append(loaded(BQ_URI, D1))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(answers) == 8 and all(a[("a", "", "survey_responses")] == 3 for a in answers)
    assert len(bq.job_inserts("query")) == before + 1
    loaded(BQ_URI, D1)  # within the TTL: the same answer
    assert len(bq.job_inserts("query")) == before + 1
    loaded(BQ_URI, D1, fresh=True)
    assert len(bq.job_inserts("query")) == before + 2


def ingest_two_variants(warehouse: Warehouse) -> None:
    warehouse.replace(D1, None, survey({"a": 3}))
    warehouse.replace(D1, "a", variant_results([10, 20], "aaaaaaaaaa", cost=0.5), variant=A)
    warehouse.replace(D1, "a", variant_results([11, 30], "bbbbbbbbbb", cost=0.75), variant=B)


def test_approve_publishes_the_named_variant_only(warehouse: Warehouse) -> None:
    ingest_two_variants(warehouse)
    with pytest.raises(WarehouseError, match="several variants ingested"):
        warehouse.approve(D1, "a", "Jane")
    with pytest.raises(WarehouseError, match="variant est-9 is not ingested"):
        warehouse.approve(D1, "a", "Jane", variant="est-9")
    approval = warehouse.approve(D1, "a", "Jane", variant=B)
    assert (approval.variant, approval.program_fingerprint) == (B, "bbbbbbbbbb")
    assert approval.rows["model_estimates"] == 2 and approval.rows["pipeline_runs"] == 1
    published = "`{published}.model_estimates`"
    assert select(warehouse, f"SELECT variant, estimate FROM {published} ORDER BY 2") == [
        (B, 11.0),
        (B, 30.0),
    ]
    for table in ("validation_checks", "pipeline_runs"):
        assert select(warehouse, f"SELECT DISTINCT variant FROM `{{published}}.{table}`") == [(B,)]
    assert select(
        warehouse, "SELECT variant, program_fingerprint FROM `{published}.v_deliveries`"
    ) == [(B, "bbbbbbbbbb")]
    assert select(warehouse, "SELECT DISTINCT variant FROM `{published}.v_estimates`") == [(B,)]
    # Switching the champion: A replaces B in the published dataset, never next to it.
    warehouse.approve(D1, "a", "Ken", champion=A)
    assert select(
        warehouse, "SELECT variant, COUNT(*) FROM `{published}.model_estimates` GROUP BY 1"
    ) == [(A, 2)]
    assert select(warehouse, "SELECT variant FROM `{published}.v_deliveries`") == [(A,)]
    status = warehouse.publication_status(D1).iloc[0]
    assert (status["approved_by"], status["variant"]) == ("Ken", A)


def test_one_transaction_publishes_each_cohort_with_its_own_variant(
    warehouse: Warehouse,
) -> None:
    """Cohorts published together (``pipeline approve`` of a delivery) each keep their
    own variant: a's A and b's B, never the other's rows, with one approval each; a
    cohort published later, in a transaction of its own, leaves them as they are."""
    warehouse.replace(D1, None, survey({"a": 3, "b": 3, "c": 3}))
    for code in ("a", "b", "c"):
        warehouse.replace(D1, code, variant_results([1, 2], "aaaaaaaaaa"), variant=A)
        warehouse.replace(D1, code, variant_results([5, 6, 7], "bbbbbbbbbb"), variant=B)
    facts = warehouse.approval_facts(D1)
    checked = [
        warehouse.check_approval(D1, "a", "Jane", variant=A, facts=facts),
        warehouse.check_approval(D1, "b", "Jane", variant=B, facts=facts),
    ]
    assert warehouse.publish(checked) == checked
    published = "SELECT cohort, variant, COUNT(*) FROM `{published}.%s` GROUP BY 1, 2 ORDER BY 1"
    assert select(warehouse, published % "model_estimates") == [("a", A, 2), ("b", B, 3)]
    staged = select(warehouse, published.replace("`{published}.%s`", "validation_checks"))
    assert select(warehouse, published % "validation_checks") == [
        row for row in staged if row[:2] in (("a", A), ("b", B))
    ]
    assert select(warehouse, published % "approvals") == [("a", A, 1), ("b", B, 1)]
    assert select(
        warehouse, "SELECT cohort, COUNT(*) FROM `{published}.survey_responses` GROUP BY 1"
    ) == [("a", 3), ("b", 3)]
    warehouse.approve(D1, "c", "Ken", variant=A)
    assert select(warehouse, published % "model_estimates") == [
        ("a", A, 2), ("b", B, 3), ("c", A, 2)
    ]  # fmt: skip


def test_the_champion_must_be_ingested_unless_a_variant_is_named(warehouse: Warehouse) -> None:
    ingest_two_variants(warehouse)
    with pytest.raises(
        WarehouseError,
        match=r"champion variant est-1\.0-c+ \(\[pipeline\] program\) is not ingested",
    ):
        warehouse.approve(D1, "a", "Jane", champion="est-1.0-cccccccccc")


def test_compare_two_variants(warehouse: Warehouse) -> None:
    ingest_two_variants(warehouse)
    result = compare(warehouse, D1, champion=A)
    assert result.variants == [A, B] and result.baseline == A
    rows = {r.treatment: r for r in result.rows}
    assert set(rows) == {"t0", "t1"}
    t0, t1 = rows["t0"], rows["t1"]
    # helpers: ci = estimate ± 1
    assert (t0.baseline_estimate, t0.estimate, t0.difference) == (10.0, 11.0, 1.0)
    assert t0.relative == pytest.approx(0.1) and t0.overlap is True
    assert (t1.difference, t1.overlap) == (10.0, False)
    assert t1.relative == pytest.approx(0.5)
    costs = {c.variant: c for c in result.costs}
    assert (costs[A].cost_usd, costs[B].cost_usd) == (0.5, 0.75)
    assert costs[A].run_seconds == costs[B].run_seconds == 300.0  # helpers: 5 minutes
    assert costs[B].program == "est 1.0" and costs[B].runs == 1
    # Naming them the other way round makes B the baseline.
    flipped = compare(warehouse, D1, variants=[B, A])
    assert [r.difference for r in flipped.rows] == [-1.0, -10.0]
    with pytest.raises(WarehouseError, match="has no estimates"):
        compare(warehouse, D1, variants=[A, "est-2.0-x"])


def test_missing_treatment_compares_as_unknown(warehouse: Warehouse) -> None:
    warehouse.replace(D1, "a", variant_results([1, 2], "aaaaaaaaaa"), variant=A)
    warehouse.replace(D1, "a", variant_results([1], "bbbbbbbbbb"), variant=B)
    rows = {r.treatment: r for r in compare(warehouse, D1, champion=A).rows}
    assert rows["t1"].estimate is None and rows["t1"].difference is None
    assert rows["t1"].overlap is None
    assert rows["t0"].difference == 0.0
