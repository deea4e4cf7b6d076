"""The BigQuery backend at the wire: the real google-cloud-bigquery client against the
local fake REST server; these tests assert the exact requests it makes (tables, load
jobs, transactions, parameters) and how failures read."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import re

import pandas as pd
import pyarrow.parquet as pq
import pytest

from pipeline.errors import ConfigError, WarehouseError
from pipeline.warehouse import open_warehouse, shared
from pipeline.warehouse.bigquery import (
    BigQuerySettings,
    BigQueryWarehouse,
    label_value,
    make_client,
)
from pipeline.warehouse.schema import APPROVALS, INGEST_LOG, TABLES, VARIANT_TABLES
from tests.warehouse.bqfake import FakeBigQuery, _qualified
from tests.warehouse.helpers import BQ_URI, DATASET, FAST, PROJECT, estimates, results, survey

D0, D1 = dt.date(2026, 10, 22), dt.date(2026, 11, 22)
STAGING, PUBLISHED = f"{PROJECT}.{DATASET}", f"{PROJECT}.{DATASET}_published"


def params(job: dict) -> dict[str, tuple[str, str | None]]:
    """name → (type, value) of a query job's parameters."""
    return {
        p["name"]: (p["parameterType"]["type"], p.get("parameterValue", {}).get("value"))
        for p in job["configuration"]["query"].get("queryParameters", [])
    }


def params_of(job: dict) -> dict[str, list]:
    """A job's array parameters: each one's elements."""
    return {
        p["name"]: p["parameterValue"].get("arrayValues", [])
        for p in job["configuration"]["query"].get("queryParameters", [])
        if p["parameterType"]["type"] == "ARRAY"
    }


def replace_jobs(bq: FakeBigQuery) -> list[dict]:
    return [r.body for r in bq.job_inserts("query") if "BEGIN TRANSACTION" in query_of(r.body)]


def query_of(body: dict) -> str:
    return body["configuration"]["query"]["query"]


def test_opening_does_not_connect(bq: FakeBigQuery) -> None:
    wh = open_warehouse(BQ_URI)
    assert isinstance(wh, BigQueryWarehouse)
    assert (wh.project, wh.dataset, wh.published) == (PROJECT, DATASET, "survey_published")
    assert bq.requests == []


@pytest.mark.parametrize(
    "uri",
    ["bigquery://", "bigquery://test-project", "bigquery://Bad_Project/ds", "bigquery://p/d-x"],
)
def test_malformed_uri_is_refused(uri: str) -> None:
    with pytest.raises(ConfigError, match="expected bigquery://PROJECT/DATASET"):
        BigQueryWarehouse(uri, settings=FAST)


def test_published_dataset_is_configurable() -> None:
    wh = BigQueryWarehouse(BQ_URI, settings=BigQuerySettings(published_dataset="clients"))
    assert wh.published_dataset == f"{PROJECT}.clients"
    with pytest.raises(ConfigError, match="other than the staging dataset"):
        BigQueryWarehouse(BQ_URI, settings=BigQuerySettings(published_dataset=DATASET))


def test_label_values_are_valid() -> None:
    assert label_value("2026-11-22") == "2026-11-22"
    assert label_value("Diabetes Type.2") == "diabetes_type_2"
    assert len(label_value("x" * 100)) == 63


def test_missing_credentials_say_what_to_do(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.delenv("PIPELINE_BIGQUERY_ENDPOINT", raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    with pytest.raises(ConfigError, match="gcloud auth application-default login"):
        make_client(PROJECT, None)


def test_first_load_creates_datasets_and_partitioned_tables_with_explicit_schemas(
    bq: FakeBigQuery, bq_warehouse: BigQueryWarehouse
) -> None:
    bq_warehouse.replace(D1, "a", results([1, 2]))
    created = [r.body["datasetReference"]["datasetId"] for r in bq.of("POST", r"/datasets$")]
    assert created == [DATASET, f"{DATASET}_published"]
    tables = {
        (r.path.split("/")[4], r.body["tableReference"]["tableId"]): r.body
        for r in bq.of("POST", r"/tables$")
        if not r.body["tableReference"]["tableId"].startswith("_load_")
    }
    expected = {
        **{(DATASET, t.name): t for t in (*TABLES.values(), INGEST_LOG)},
        **{(f"{DATASET}_published", t.name): t for t in (*TABLES.values(), APPROVALS)},
    }
    assert set(tables) == set(expected)
    for key, body in tables.items():
        fields = [(f["name"], f["type"]) for f in body["schema"]["fields"]]
        assert fields == list(expected[key].columns), key
        assert body["timePartitioning"] == {"type": "DAY", "field": "run_date"}
        variant_table = key[1] in VARIANT_TABLES
        assert body["clustering"] == {
            "fields": ["cohort", "variant"] if variant_table else ["cohort"]
        }
        assert body["labels"] == {"pipeline": "survey-pipeline"}
    # Once per process: a second load reads nothing more about the layout.
    before = len(bq.of("GET", r"/tables/[a-z_]+$"))
    bq_warehouse.replace(D1, "b", results([3]))
    assert len(bq.of("GET", r"/tables/[a-z_]+$")) == before


def test_load_jobs_are_parquet_into_a_per_load_table(
    bq: FakeBigQuery, bq_warehouse: BigQueryWarehouse
) -> None:
    bq_warehouse.replace(D1, "a", results([1, 2]))
    loads = bq.job_inserts("load")
    assert [r.upload_type for r in loads] == ["multipart"] * 3
    for request, table in zip(
        loads, ["model_estimates", "validation_checks", "pipeline_runs"], strict=True
    ):
        body = request.body
        assert body["jobReference"]["jobId"].startswith(f"pipeline_load_{table}_")
        load = body["configuration"]["load"]
        destination = load["destinationTable"]
        assert destination["projectId"] == PROJECT and destination["datasetId"] == DATASET
        assert re.fullmatch(rf"_load_{table}_20261122_a_[0-9a-f]{{12}}", destination["tableId"])
        assert load["sourceFormat"] == "PARQUET"
        assert load["writeDisposition"] == "WRITE_TRUNCATE"
        assert load["createDisposition"] == "CREATE_IF_NEEDED"
        assert "autodetect" not in load
        assert [(f["name"], f["type"]) for f in load["schema"]["fields"]] == list(
            TABLES[table].columns
        )
        assert body["configuration"]["labels"] == {
            "pipeline": "survey-pipeline",
            "run_date": "2026-11-22",
            "cohort": "a",
            "table": table,
        }
        labels = body["configuration"]["labels"].values()
        assert all(re.fullmatch(r"[a-z0-9_-]{0,63}", v) for v in labels)
        # The per-load table exists (with an expiry) before the load and is dropped after.
        created = [
            r.body
            for r in bq.of("POST", r"/tables$")
            if r.body["tableReference"]["tableId"] == destination["tableId"]
        ]
        assert created and "expirationTime" in created[0]
        assert bq.of("DELETE", rf"/tables/{destination['tableId']}$")
    uploaded = pq.read_table(io.BytesIO(loads[0].upload)).to_pandas()
    assert list(uploaded["estimate"]) == [1.0, 2.0]
    assert set(uploaded["cohort"]) == {"a"} and set(uploaded["run_date"]) == {D1}
    assert not [t for t in bq.tables if t[2].startswith("_load_")]


def test_one_transaction_replaces_the_cohort_variant_in_every_table(
    bq: FakeBigQuery, bq_warehouse: BigQueryWarehouse
) -> None:
    bq_warehouse.replace(D1, "a", results([1, 2]), variant="est-1.0-abc")
    load_tables = [
        "{projectId}.{datasetId}.{tableId}".format(
            **r.body["configuration"]["load"]["destinationTable"]
        )
        for r in bq.job_inserts("load")
    ]
    (job,) = replace_jobs(bq)
    cols = {t: ", ".join(f"`{c}`" for c in TABLES[t].column_names) for t in TABLES}
    scope = (
        "WHERE run_date = @run_date AND cohort = @cohort "
        "AND (variant = @variant OR variant IS NULL);"
    )
    expected = ["BEGIN TRANSACTION;"]
    for table, load_table in zip(
        ["model_estimates", "validation_checks", "pipeline_runs"], load_tables, strict=True
    ):
        expected += [
            f"DELETE FROM `{STAGING}.{table}` {scope}",
            f"INSERT INTO `{STAGING}.{table}` ({cols[table]}) SELECT {cols[table]} "
            f"FROM `{load_table}`;",
        ]
    expected += [
        f"INSERT INTO `{STAGING}.ingest_log` (run_date, cohort, table_name, row_count, "
        "load_id, ingested_at, variant) VALUES",
        "  (@run_date, @cohort, 'model_estimates', 2, @load_id, CURRENT_TIMESTAMP(), @variant),",
        "  (@run_date, @cohort, 'validation_checks', 2, @load_id, CURRENT_TIMESTAMP(), @variant),",
        "  (@run_date, @cohort, 'pipeline_runs', 1, @load_id, CURRENT_TIMESTAMP(), @variant);",
        "COMMIT TRANSACTION;",
    ]
    assert query_of(job) == "\n".join(expected)
    got = params(job)
    assert got["run_date"] == ("DATE", "2026-11-22") and got["cohort"] == ("STRING", "a")
    assert got["variant"] == ("STRING", "est-1.0-abc")
    assert got["load_id"][0] == "STRING" and re.fullmatch(r"[0-9a-f]{32}", got["load_id"][1])
    assert job["configuration"]["query"]["useLegacySql"] is False
    assert job["configuration"]["labels"] == {
        "pipeline": "survey-pipeline",
        "step": "replace",
        "run_date": "2026-11-22",
        "cohort": "a",
    }
    # The load tables are dropped only after the transaction.
    order = [(r.method, r.path) for r in bq.requests]
    transaction = order.index(("POST", f"/projects/{PROJECT}/jobs"))
    drops = [i for i, (m, _) in enumerate(order) if m == "DELETE"]
    assert len(drops) == 3 and min(drops) > transaction


def test_rerun_of_a_cohort_deletes_only_that_cohort(
    bq: FakeBigQuery, bq_warehouse: BigQueryWarehouse
) -> None:
    bq_warehouse.replace(D1, "a", results([1, 2]))
    bq_warehouse.replace(D1, "b", results([3, 4, 5]))
    bq_warehouse.replace(D1, "a", results([7, 8]))
    jobs = replace_jobs(bq)
    assert [params(j)["cohort"][1] for j in jobs] == ["a", "b", "a"]
    for job in jobs:
        deletes = re.findall(r"DELETE FROM .*? WHERE (.*?);", query_of(job))
        assert deletes and set(deletes) == {"run_date = @run_date AND cohort = @cohort"}
    got = bq.sql(
        f'SELECT cohort, count(*), sum(estimate) FROM "{PROJECT}"."{DATASET}".model_estimates '
        "GROUP BY 1 ORDER BY 1"
    )
    assert got == [("a", 2, 15.0), ("b", 3, 12.0)]


def test_survey_load_replaces_every_cohort_of_the_date(
    bq: FakeBigQuery, bq_warehouse: BigQueryWarehouse
) -> None:
    bq_warehouse.replace(D1, None, survey({"a": 2, "b": 1}))
    (job,) = replace_jobs(bq)
    sql = query_of(job)
    assert set(re.findall(r"DELETE FROM .*? WHERE (.*?);", sql)) == {"run_date = @run_date"}
    assert "(@run_date, CAST(NULL AS STRING), 'survey_responses', 3, @load_id" in sql
    assert "cohort" not in params(job)
    labels = {r.body["configuration"]["labels"]["cohort"] for r in bq.job_inserts("load")}
    assert labels == {"all"}


def test_new_result_columns_are_added_to_the_table(
    bq: FakeBigQuery, bq_warehouse: BigQueryWarehouse
) -> None:
    bq_warehouse.replace(D1, "a", {"model_estimates": estimates([1])})
    bq_warehouse.replace(D1, "b", {"model_estimates": estimates([2], n_respondents=[40])})
    (patch,) = bq.of("PATCH", r"/datasets/survey/tables/model_estimates$")
    fields = [(f["name"], f["type"]) for f in patch.body["schema"]["fields"]]
    assert fields[:-1] == [
        (n, {"INT64": "INTEGER", "FLOAT64": "FLOAT", "BOOL": "BOOLEAN"}.get(t, t))
        for n, t in TABLES["model_estimates"].columns
    ]
    assert fields[-1] == ("n_respondents", "INT64")
    # A later load without values in the new column keeps its type.
    bq_warehouse.replace(D1, "c", {"model_estimates": estimates([3], n_respondents=[None])})
    last = bq.job_inserts("load")[-1].body["configuration"]["load"]["schema"]["fields"]
    assert ("n_respondents", "INT64") in [(f["name"], f["type"]) for f in last]


def test_changed_column_type_is_a_schema_mismatch(
    bq: FakeBigQuery, bq_warehouse: BigQueryWarehouse
) -> None:
    bq_warehouse.replace(D1, "a", {"model_estimates": estimates([1], n_respondents=[40])})
    loads = len(bq.job_inserts("load"))
    with pytest.raises(
        WarehouseError,
        match=r"model_estimates: schema mismatch \(column n_respondents is INT64 there, this "
        r"load has STRING\).*docs/warehouse.md",
    ):
        bq_warehouse.replace(D1, "a", {"model_estimates": estimates([1], n_respondents=["x"])})
    assert len(bq.job_inserts("load")) == loads and len(replace_jobs(bq)) == 1


def test_permission_denied_names_the_job_and_the_missing_role(
    bq: FakeBigQuery, bq_warehouse: BigQueryWarehouse
) -> None:
    bq.deny(
        "POST",
        rf"^/projects/{PROJECT}/jobs$",
        message=f"Access Denied: Project {PROJECT}: User does not have bigquery.jobs.create "
        f"permission in project {PROJECT}.",
    )
    with pytest.raises(WarehouseError) as caught:
        bq_warehouse.replace(D1, "a", results([1]))
    (attempt,) = bq.job_inserts("load")
    job_id = attempt.body["jobReference"]["jobId"]
    message = str(caught.value)
    assert f"BigQuery load job {job_id}" in message
    assert "accessDenied" in message and "nothing was replaced" in message
    assert (
        f"grant the identity that runs the pipeline roles/bigquery.jobUser on project {PROJECT}"
        in message
    )
    assert not replace_jobs(bq)
    assert not [t for t in bq.tables if t[2].startswith("_load_")]


def test_approving_a_deliverys_cohorts_makes_the_published_tables_and_views_once(
    bq: FakeBigQuery, bq_warehouse: BigQueryWarehouse
) -> None:
    """``pipeline approve`` approves a delivery's cohorts one after another on one
    warehouse object: the published tables and the clients' views are made for the first
    and not again while the staging columns stay the same."""
    codes = ["a", "b", "c"]
    bq_warehouse.replace(D1, None, survey(dict.fromkeys(codes, 2)))
    for code in codes:
        bq_warehouse.replace(D1, code, results([1, 2]))
    table_calls = len(bq.requests)
    for code in codes:
        bq_warehouse.approve(D1, code, "Jane")
    views = [q for q in bq.queries() if "CREATE OR REPLACE VIEW" in q]
    assert len(views) == 1
    published = f"/datasets/{DATASET}_published/tables"
    touched = [r for r in bq.requests[table_calls:] if published in r.path]
    assert len(touched) <= len(TABLES) * 2  # made (or looked at) once, not per cohort
    estimates = _qualified(PROJECT, f"{DATASET}_published", "model_estimates")
    rows = bq.sql(f"SELECT cohort, COUNT(*) FROM {estimates} GROUP BY 1 ORDER BY 1")
    assert rows == [(code, 2) for code in codes]
    # another process (a new object) makes them again
    BigQueryWarehouse(BQ_URI, settings=FAST).approve(D1, "a", "Ken")
    assert len([q for q in bq.queries() if "CREATE OR REPLACE VIEW" in q]) == 2


def test_failed_load_job_names_the_job_and_changes_nothing(
    bq: FakeBigQuery, bq_warehouse: BigQueryWarehouse
) -> None:
    bq_warehouse.replace(D1, None, survey({"a": 2}))
    bq_warehouse.replace(D1, "a", results([1, 2]))
    bq_warehouse.approve(D1, "a", "Jane")
    published = bq.rows(PROJECT, f"{DATASET}_published", "model_estimates", "treatment")
    queries = len(bq.queries())
    bq.fail_job(
        "load",
        "accessDenied",
        f"Access Denied: Table {PROJECT}:{DATASET}._load_x: Permission "
        "bigquery.tables.updateData denied on table (or it may not exist).",
        match="validation_checks",
    )
    with pytest.raises(WarehouseError) as caught:
        bq_warehouse.replace(D1, "a", results([5, 6]))
    failed = [
        r for r in bq.job_inserts("load") if "validation_checks" in r.body["jobReference"]["jobId"]
    ]
    message = str(caught.value)
    assert f"BigQuery load job {failed[-1].body['jobReference']['jobId']}" in message
    assert f"roles/bigquery.dataEditor on datasets {STAGING} and {PUBLISHED}" in message
    assert f"`bq show -j {PROJECT}:{failed[-1].body['jobReference']['jobId']}`" in message
    assert len(bq.queries()) == queries  # no transaction, no publish
    assert bq.rows(PROJECT, DATASET, "model_estimates", "treatment") == published
    assert bq.rows(PROJECT, f"{DATASET}_published", "model_estimates", "treatment") == published
    assert not [t for t in bq.tables if t[2].startswith("_load_")]


@pytest.mark.parametrize(
    ("reason", "message", "advice"),
    [
        (
            "invalid",
            "Provided Schema does not match Table test-project:survey._load_x. Field estimate "
            "has changed type from FLOAT to STRING",
            "schema mismatch on column estimate",
        ),
        (
            "quotaExceeded",
            "Quota exceeded: Your table exceeded quota for imports or query appends per table.",
            "retry later",
        ),
        ("invalid", "Error while reading data: corrupt file", "fix the cause, then re-run"),
    ],
)
def test_job_errors_say_what_to_do(
    bq: FakeBigQuery, bq_warehouse: BigQueryWarehouse, reason: str, message: str, advice: str
) -> None:
    bq.fail_job("load", reason, message)
    with pytest.raises(WarehouseError) as caught:
        bq_warehouse.replace(D1, "a", results([1]))
    (load,) = bq.job_inserts("load")  # not retried: none of these is transient
    text = str(caught.value)
    assert load.body["jobReference"]["jobId"] in text
    assert f"{reason}: {message}" in text and advice in text
    assert not replace_jobs(bq)


def test_transient_failures_are_retried_with_a_new_job(
    bq: FakeBigQuery, bq_warehouse: BigQueryWarehouse
) -> None:
    bq.fail_job("load", "backendError", "Backend error. Job aborted.")
    bq.fail_job(
        "query",
        "invalidQuery",
        "Transaction is aborted due to concurrent update against table "
        f"{PROJECT}:{DATASET}.model_estimates.",
        match="BEGIN TRANSACTION",
    )
    bq_warehouse.replace(D1, "a", results([1, 2]))
    ids = [r.body["jobReference"]["jobId"] for r in bq.job_inserts("load")]
    assert len(ids) == 4 and len(set(ids)) == 4  # model_estimates twice
    assert len(replace_jobs(bq)) == 2
    assert bq.sql(f'SELECT count(*) FROM "{PROJECT}"."{DATASET}".model_estimates') == [(2,)]


def test_retries_give_up_after_the_deadline(
    bq: FakeBigQuery, bq_warehouse: BigQueryWarehouse
) -> None:
    bq.fail_job(
        "query",
        "rateLimitExceeded",
        "Exceeded rate limits: too many table update operations for this table.",
        match="BEGIN TRANSACTION",
        times=1000,
    )
    with pytest.raises(
        WarehouseError,
        match=r"BigQuery replace job pipeline_replace_\w+ .* failed after \d+ attempts"
        r".*retry later",
    ):
        bq_warehouse.replace(D1, "a", results([1]))
    assert len(replace_jobs(bq)) > 1
    assert not [t for t in bq.tables if t[2].startswith("_load_")]


def test_a_job_that_outlives_its_timeout_is_cancelled(bq: FakeBigQuery) -> None:
    wh = BigQueryWarehouse(BQ_URI, settings=dataclasses.replace(FAST, job_timeout=0.3))
    bq.hang_load("_load_validation_checks")
    with pytest.raises(WarehouseError) as caught:
        wh.replace(D1, "a", results([1]))
    (hung,) = [
        r.body["jobReference"]["jobId"]
        for r in bq.job_inserts("load")
        if "validation_checks" in r.body["jobReference"]["jobId"]
    ]
    assert f"BigQuery load job {hung} " in str(caught.value)
    assert "did not finish within 0.3s ([bigquery] job_timeout) and was cancelled" in str(
        caught.value
    )
    assert bq.of("POST", rf"/jobs/{hung}/cancel$")
    assert not replace_jobs(bq)


def test_table_permission_errors_name_the_table_and_role(
    bq: FakeBigQuery, bq_warehouse: BigQueryWarehouse
) -> None:
    bq.deny(
        "POST",
        rf"/datasets/{DATASET}/tables$",
        message="Access Denied: Dataset test-project:survey: Permission bigquery.tables.create "
        "denied on dataset test-project:survey (or it may not exist).",
    )
    with pytest.raises(
        WarehouseError,
        match=rf"creating table {STAGING}.survey_responses failed \(accessDenied\).*"
        rf"roles/bigquery.dataEditor on datasets {STAGING} and {PUBLISHED}",
    ):
        bq_warehouse.replace(D1, "a", results([1]))


def test_resumable_upload_for_large_loads(
    bq: FakeBigQuery, bq_warehouse: BigQueryWarehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    import google.cloud.bigquery.client as client_module

    monkeypatch.setattr(client_module, "_MAX_MULTIPART_SIZE", 1)  # every load counts as large
    bq_warehouse.replace(D1, "a", {"model_estimates": estimates([1, 2, 3])})
    (start,) = bq.job_inserts("load")
    assert start.upload_type == "resumable"
    assert start.body["configuration"]["load"]["sourceFormat"] == "PARQUET"
    assert bq.sql(f'SELECT count(*) FROM "{PROJECT}"."{DATASET}".model_estimates') == [(3,)]


def test_query_returns_typed_columns(bq: FakeBigQuery, bq_warehouse: BigQueryWarehouse) -> None:
    bq_warehouse.replace(D1, "a", results([1, 2]))
    frame = bq_warehouse.query(
        "SELECT run_date, started_at, exit_code, cost_usd, "
        "exit_code = @code AS ok FROM pipeline_runs WHERE cohort = @cohort",
        {"code": 0, "cohort": "a"},
    )
    row = frame.iloc[0]
    assert row["run_date"] == D1
    assert row["started_at"] == pd.Timestamp("2026-11-22T10:00:00Z")
    assert row["exit_code"] == 0 and row["cost_usd"] == 0.0 and bool(row["ok"])
    (job,) = [r.body for r in bq.job_inserts("query") if "@code" in query_of(r.body)]
    assert params(job) == {"code": ("INT64", "0"), "cohort": ("STRING", "a")}
    assert job["configuration"]["query"]["defaultDataset"] == {
        "projectId": PROJECT,
        "datasetId": DATASET,
    }


def test_approve_publishes_in_one_transaction_with_the_sign_off(
    bq: FakeBigQuery, bq_warehouse: BigQueryWarehouse
) -> None:
    bq_warehouse.replace(D1, None, survey({"a": 2}))
    bq_warehouse.replace(D1, "a", results([1, 2]))
    before = len(bq.queries())
    bq_warehouse.approve(D1, "a", "Jane Doe")
    jobs = [r.body for r in bq.job_inserts("query")][before:]
    # The date's facts (two queries), the clients' views, the publish transaction.
    assert len(jobs) == 4
    views, publish = jobs[-2], jobs[-1]
    assert "CREATE OR REPLACE VIEW `test-project.survey_published.v_estimates` AS" in query_of(
        views
    )
    writes = [
        query_of(j)
        for j in jobs
        if re.search(rf"(INSERT INTO|DELETE FROM) `{PUBLISHED}\.", query_of(j))
    ]
    assert writes == [query_of(publish)]  # the published dataset changes in this job only
    sql = query_of(publish)
    assert sql.startswith("BEGIN TRANSACTION;\n") and sql.endswith("\nCOMMIT TRANSACTION;")
    approving = "UNNEST(@approvals) AS a"
    for table in TABLES:
        assert (
            f"DELETE FROM `{PUBLISHED}.{table}` WHERE run_date = @run_date AND cohort IN "
            f"(SELECT a.cohort FROM {approving});" in sql
        )
        # The variant tables: each cohort's approved variant's rows only.
        variant = r" AND a\.variant = COALESCE\(s\.variant, ''\)" if table in VARIANT_TABLES else ""
        assert re.search(
            rf"INSERT INTO `{PUBLISHED}\.{table}` \(.*\) SELECT s\..* FROM `{STAGING}\.{table}` "
            rf"AS s JOIN UNNEST\(@approvals\) AS a ON a\.cohort = s\.cohort{variant} "
            r"WHERE s\.run_date = @run_date;",
            sql,
        ), table
    assert f"INSERT INTO `{PUBLISHED}.approvals`" in sql
    assert "s.severity = 'error' AND NOT s.passed)" in sql  # re-checked inside
    (approvals,) = publish["configuration"]["query"]["queryParameters"][1:]
    assert approvals["name"] == "approvals"
    kind = approvals["parameterType"]
    assert kind["type"] == "ARRAY" and kind["arrayType"]["type"] == "STRUCT"
    fields = {f["name"]: f["type"]["type"] for f in kind["arrayType"]["structTypes"]}
    assert fields["approved_at"] == fields["ingested_at"] == "TIMESTAMP"
    (struct,) = approvals["parameterValue"]["arrayValues"]
    values = {k: v.get("value") for k, v in struct["structValues"].items()}
    assert values["cohort"] == "a" and values["approved_by"] == "Jane Doe"
    assert values["program_version"] == "1.0"
    assert publish["configuration"]["labels"]["step"] == "publish"
    assert publish["configuration"]["labels"]["cohort"] == "a"
    assert bq.sql(f'SELECT approved_by FROM "{PROJECT}"."{DATASET}_published".approvals') == [
        ("Jane Doe",)
    ]


def test_a_delivery_is_published_in_one_transaction_and_a_refusal_in_it_stays_alone(
    bq: FakeBigQuery, bq_warehouse: BigQueryWarehouse
) -> None:
    """Checked sign-offs of many cohorts go to BigQuery as one publish job; when its
    transaction refuses a cohort (re-ingested since the facts were read), the cohorts are
    tried again in halves, and the refused one alone stays unpublished."""
    cohorts = ["a", "b", "c", "d"]
    bq_warehouse.replace(D1, None, survey(dict.fromkeys(cohorts, 2)))
    for code in cohorts:
        bq_warehouse.replace(D1, code, results([1, 2]))
    facts = bq_warehouse.approval_facts(D1)
    checked = [bq_warehouse.check_approval(D1, c, "Jane", facts=facts) for c in cohorts]
    bq_warehouse.replace(D1, "c", results([7, 8, 9]))  # after the facts were read
    before = len(bq.job_inserts("query"))
    outcomes = bq_warehouse.publish(checked)
    assert [o.cohort for o in outcomes[:2] + outcomes[3:]] == ["a", "b", "d"]
    assert isinstance(outcomes[2], WarehouseError)
    assert "cohort c was re-ingested while being approved" in str(outcomes[2])
    jobs = [r.body for r in bq.job_inserts("query")[before:]]
    publishes = [j for j in jobs if j["configuration"]["labels"]["step"] == "publish"]
    # All four (refused), then a+b (published), then c+d (refused), then c, then d.
    assert [len(params_of(j)["approvals"]) for j in publishes] == [4, 2, 2, 1, 1]
    assert [j["configuration"]["labels"]["cohort"] for j in publishes] == [
        "several", "several", "several", "c", "d"
    ]  # fmt: skip
    published = f'"{PROJECT}"."{DATASET}_published"'
    assert bq.sql(f"SELECT cohort FROM {published}.approvals ORDER BY 1") == [
        ("a",), ("b",), ("d",)
    ]  # fmt: skip
    assert bq.sql(
        f"SELECT cohort, COUNT(*) FROM {published}.model_estimates GROUP BY 1 ORDER BY 1"
    ) == [("a", 2), ("b", 2), ("d", 2)]


def test_failed_publish_leaves_the_published_dataset_untouched(
    bq: FakeBigQuery, bq_warehouse: BigQueryWarehouse
) -> None:
    bq_warehouse.replace(D1, None, survey({"a": 2}))
    bq_warehouse.replace(D1, "a", results([1, 2]))
    bq_warehouse.approve(D1, "a", "Jane")
    published = {
        t: bq.rows(PROJECT, f"{DATASET}_published", t, "1")
        for t in ("model_estimates", "survey_responses", "approvals")
    }
    bq_warehouse.replace(D1, "a", results([5, 6, 7]))
    # The publish job fails after it deleted and re-inserted some tables.
    bq.fail_job(
        "query",
        "invalidQuery",
        "Query error: division by zero at [20:1]",
        match=f"INSERT INTO `{PUBLISHED}.approvals`",
        midway=r'INSERT INTO "test-project"\."survey_published"\."pipeline_runs"',
    )
    with pytest.raises(WarehouseError) as caught:
        bq_warehouse.approve(D1, "a", "Ken")
    (publish,) = [r.body for r in bq.job_inserts("query")[-1:] if "approvals" in query_of(r.body)]
    message = str(caught.value)
    assert f"BigQuery publish job {publish['jobReference']['jobId']}" in message
    assert "rolled back, nothing was published" in message
    for table, rows in published.items():
        assert bq.rows(PROJECT, f"{DATASET}_published", table, "1") == rows, table
    assert bq_warehouse.publication_status(D1).iloc[0]["approved_by"] == "Jane"


def test_refused_approval_issues_no_publish_job(
    bq: FakeBigQuery, bq_warehouse: BigQueryWarehouse
) -> None:
    bq_warehouse.replace(D1, None, survey({"b": 2}))
    bq_warehouse.replace(D1, "b", results([], passed=False))
    with pytest.raises(WarehouseError, match="cohort b of 2026-11-22 cannot be approved"):
        bq_warehouse.approve(D1, "b", "Jane")
    assert not [q for q in bq.queries() if f"`{PUBLISHED}." in q and "BEGIN" in q]


def test_a_wide_delivery_is_published_in_bounded_transactions(
    bq: FakeBigQuery, bq_warehouse: BigQueryWarehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shared, "PUBLISH_BATCH", 2)
    cohorts = ["a", "b", "c"]
    bq_warehouse.replace(D1, None, survey(dict.fromkeys(cohorts, 2)))
    for code in cohorts:
        bq_warehouse.replace(D1, code, results([1, 2]))
    facts = bq_warehouse.approval_facts(D1)
    checked = [bq_warehouse.check_approval(D1, c, "Jane", facts=facts) for c in cohorts]
    before = len(bq.job_inserts("query"))
    assert bq_warehouse.publish(checked) == checked
    jobs = [r.body for r in bq.job_inserts("query")[before:]]
    publishes = [j for j in jobs if j["configuration"]["labels"]["step"] == "publish"]
    assert [len(params_of(j)["approvals"]) for j in publishes] == [2, 1]
    published = f'"{PROJECT}"."{DATASET}_published"'
    assert bq.sql(f"SELECT cohort FROM {published}.approvals ORDER BY 1") == [
        ("a",), ("b",), ("c",)
    ]  # fmt: skip


def test_replace_transactions_of_one_process_run_one_at_a_time(
    bq: FakeBigQuery, bq_warehouse: BigQueryWarehouse
) -> None:
    """Cohorts that end together ingest together: BigQuery cancels a transaction that
    mutates a table another one is mutating, so the process runs its replace transactions
    one after another — none is started while another is still unfinished for its client
    (from its insert to its last poll)."""
    from concurrent.futures import ThreadPoolExecutor

    cohorts = [f"c{i}" for i in range(8)]
    bq_warehouse.replace(D1, "c0", results([1]))  # the tables exist
    before = len(bq.requests)
    with ThreadPoolExecutor(len(cohorts)) as pool:
        list(pool.map(lambda c: bq_warehouse.replace(D1, c, results([1, 2])), cohorts))
    requests = bq.requests[before:]
    inserts = {
        i: r.body["jobReference"]["jobId"]
        for i, r in enumerate(requests)
        if r.method == "POST" and re.search(r"/jobs$", r.path)
        and r.body["configuration"].get("labels", {}).get("step") == "replace"
    }  # fmt: skip
    assert len(inserts) == len(cohorts)
    for start, job in inserts.items():
        end = max(i for i, r in enumerate(requests) if job in r.path or i == start)
        assert end > start  # the client polled the job it started
        others = [inserts[i] for i in inserts if start < i <= end]
        assert not others, f"{others} started while {job} was unfinished"
    assert bq.sql(
        f'SELECT COUNT(DISTINCT cohort), COUNT(*) FROM "{PROJECT}"."{DATASET}".model_estimates'
    ) == [(len(cohorts), 2 * len(cohorts))]
