"""Warehouse backends chosen by URI: ``duckdb:///path/file.duckdb`` (embedded default) and
``bigquery://PROJECT/DATASET``. Same tables, same semantics (see ``schema.py``)."""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Protocol

import pandas as pd

from pipeline.errors import ConfigError


class Warehouse(Protocol):
    uri: str

    def replace(
        self, run_date: dt.date, cohort: str | None, tables: dict[str, pd.DataFrame]
    ) -> dict[str, int]:
        """Atomically replace, in every given table, the rows of (run_date, cohort), or of
        every cohort of run_date when ``cohort`` is None, by the given rows. Returns the
        number of rows loaded per table. A re-run never duplicates rows."""
        ...

    def query(self, sql: str) -> pd.DataFrame:
        """Run a read-only query (BigQuery SQL dialect) and return its result."""
        ...


def warehouse_id(uri: str) -> str:
    """A short stable id of a warehouse URI, used in ingest marker paths."""
    return hashlib.sha256(uri.encode()).hexdigest()[:12]


def open_warehouse(uri: str) -> Warehouse:
    if uri.startswith("duckdb://"):
        from pipeline.warehouse.duckdb import DuckDBWarehouse

        return DuckDBWarehouse(uri)
    raise ConfigError(
        f"unsupported warehouse URI {uri!r}: use duckdb:///path/file.duckdb "
        "or bigquery://PROJECT/DATASET"
    )
