"""Warehouse backends chosen by URI: ``duckdb:///path/file.duckdb`` (embedded default) and
``bigquery://PROJECT/DATASET``. Same tables, same semantics (see ``schema.py`` and
docs/warehouse.md).

Every backend has two datasets: the staging one that ingest writes and QA reads (the
URI's), and the published one that ``pipeline approve`` fills with signed-off cohorts and
clients' dashboards read through views.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import pandas as pd

from pipeline.errors import ConfigError, WarehouseError
from pipeline.warehouse.shared import STATUS_COLUMNS, Approval, ApprovalFacts

__all__ = ["STATUS_COLUMNS", "Approval", "Warehouse", "open_warehouse", "warehouse_id"]


class Warehouse(Protocol):
    uri: str
    # How package SQL names the published dataset (``{published}`` in .sql files).
    published_dataset: str

    def replace(
        self,
        run_date: dt.date,
        cohort: str | None,
        tables: dict[str, pd.DataFrame],
        *,
        variant: str | None = None,
    ) -> dict[str, int]:
        """Atomically replace, in every given table, the rows of (run_date, cohort), or of
        every cohort of run_date when ``cohort`` is None, by the given rows. With a
        ``variant`` (a program spec's slug; only for the VARIANT_TABLES of one cohort)
        only that variant's rows (and rows loaded before variants existed) are replaced,
        and every row carries it. Returns the number of rows loaded per table. A re-run
        never duplicates rows."""
        ...

    def loaded_counts(self, run_date: dt.date) -> pd.DataFrame:
        """``cohort, variant, table_name, row_count`` of every table for ``run_date`` in
        the staging dataset (variant '' outside the variant tables): one cheap query."""
        ...

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        """Run a read-only query (BigQuery SQL dialect; ``@name`` parameters from
        ``params``) and return its result. Unqualified tables are the staging dataset's."""
        ...

    def publication_status(self, run_date: dt.date) -> pd.DataFrame:
        """One row per cohort ingested for ``run_date``: ``cohort, ingested_at,
        approved_by, approved_at, program_version, published_at, variant`` (its latest sign-off;
        nulls where not approved/published), ordered by cohort."""
        ...

    def approval_facts(self, run_date: dt.date) -> ApprovalFacts:
        """What approving cohorts of ``run_date`` is decided on, read once for the date."""
        ...

    def check_approval(
        self,
        run_date: dt.date,
        cohort: str,
        approved_by: str,
        *,
        variant: str | None = None,
        champion: str | None = None,
        accepted_regression: str | None = None,
        facts: ApprovalFacts | None = None,
    ) -> Approval:
        """The sign-off ``approve`` would publish, decided on ``facts`` (else read now);
        nothing is written. Refuses as ``approve`` does."""
        ...

    def publish(self, approvals: Sequence[Approval]) -> list[Approval | WarehouseError]:
        """Publish checked sign-offs of one run date, many cohorts per transaction; a
        cohort refused inside a transaction is refused alone. Returns each one's outcome."""
        ...

    def approve(
        self,
        run_date: dt.date,
        cohort: str,
        approved_by: str,
        *,
        variant: str | None = None,
        champion: str | None = None,
        accepted_regression: str | None = None,
    ) -> Approval:
        """Record the sign-off of (run_date, cohort) with one program ``variant`` (default:
        the ``champion`` when ingested, else the only one) and publish that cohort's rows
        of every table — of that variant only — to the published dataset, atomically.
        Refuses (WarehouseError, nothing changes) a cohort that is not ingested, has
        several variants and none was named, or whose error checks failed.
        ``accepted_regression`` is the reason a person gave for approving a program
        version whose golden case failed (recorded in ``approvals``)."""
        ...

    def previous_estimates(self, run_date: dt.date, cohort: str, program_name: str) -> pd.DataFrame:
        """``run_date, treatment, estimate, program_version`` of the cohort's last
        published delivery of ``program_name`` before ``run_date`` (empty when there is
        none, or nothing is published yet)."""
        ...


def warehouse_id(uri: str) -> str:
    """A short stable id of a warehouse URI, used in ingest marker paths."""
    return hashlib.sha256(uri.encode()).hexdigest()[:12]


def open_warehouse(uri: str) -> Warehouse:
    """The backend for ``uri``. Opening never connects: a bad URI fails here, missing
    credentials or permissions on first use."""
    if uri.startswith("duckdb://"):
        from pipeline.warehouse.duckdb import DuckDBWarehouse

        return DuckDBWarehouse(uri)
    if uri.startswith("bigquery://"):
        from pipeline.warehouse.bigquery import BigQueryWarehouse

        return BigQueryWarehouse(uri)
    raise ConfigError(
        f"unsupported warehouse URI {uri!r}: use duckdb:///path/file.duckdb "
        "or bigquery://PROJECT/DATASET"
    )
