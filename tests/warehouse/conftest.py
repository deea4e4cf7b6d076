"""Warehouse fixtures: a DuckDB file per test, and the real BigQuery client talking to a
local fake of the BigQuery REST API (``bqfake.FakeBigQuery``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

from pipeline.warehouse import Warehouse, open_warehouse
from pipeline.warehouse.bigquery import BigQueryWarehouse
from tests.warehouse.bqfake import FakeBigQuery
from tests.warehouse.helpers import BQ_URI, FAST


@pytest.fixture
def bq(httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeBigQuery]:
    """The fake BigQuery server, with PIPELINE_BIGQUERY_ENDPOINT pointing at it."""
    fake = FakeBigQuery(httpserver)
    monkeypatch.setenv("PIPELINE_BIGQUERY_ENDPOINT", fake.url)
    yield fake
    # Never streaming inserts, whatever the test did.
    assert not fake.of("POST", r"/insertAll$"), "tabledata.insertAll was called"


@pytest.fixture
def bq_warehouse(bq: FakeBigQuery) -> BigQueryWarehouse:
    return BigQueryWarehouse(BQ_URI, settings=FAST)


@pytest.fixture(params=["duckdb", "bigquery"])
def warehouse(request: pytest.FixtureRequest, tmp_path: Path) -> Warehouse:
    """Each backend in turn, empty."""
    if request.param == "duckdb":
        return open_warehouse(f"duckdb://{tmp_path / 'w.duckdb'}")
    request.getfixturevalue("bq")
    return BigQueryWarehouse(BQ_URI, settings=FAST)
