"""The embedded DuckDB warehouse (``duckdb:///path/file.duckdb``).

One file holds both datasets: schema ``main`` is the staging dataset (what ingest writes,
what QA and dashboard drafts read) and schema ``published`` the published one (signed-off
rows, the approvals and the clients' views), mirroring BigQuery's two datasets.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import os
import re
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from pipeline import faults
from pipeline.errors import ConfigError, WarehouseError
from pipeline.warehouse import connections
from pipeline.warehouse.schema import APPROVALS, INGEST_LOG, TABLES, conform
from pipeline.warehouse.shared import (
    WarehouseBase,
    empty_previous,
    empty_status,
    loaded_counts_sql,
    merge_status,
    named_cohorts,
    previous_estimates_sql,
    scope_sql,
    sql_text,
)

if TYPE_CHECKING:
    # the module itself is imported where a connection is made: `pipeline run` checks its
    # warehouse URI before any task runs, and DuckDB's import is not needed for that
    import duckdb

_TYPES = {
    "STRING": "VARCHAR",
    "INT64": "BIGINT",
    "FLOAT64": "DOUBLE",
    "BOOL": "BOOLEAN",
    "DATE": "DATE",
    "TIMESTAMP": "TIMESTAMPTZ",
}
STAGING, PUBLISHED = "main", "published"
# DuckDB lets one process write a file at a time; parallel luigi workers take turns.
LOCK_WAIT_SECONDS = 120.0


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _param(value: Any) -> Any:
    # DuckDB converts aware datetimes through pytz; connections run in UTC, so naive UTC
    # values mean the same instant. A list of dicts is an ARRAY<STRUCT> (``@approvals``).
    if isinstance(value, list):
        return [_param(v) for v in value]
    if isinstance(value, dict):
        return {k: _param(v) for k, v in value.items()}
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


def run_bigquery_sql(
    con: duckdb.DuckDBPyConnection, sql: str, params: Mapping[str, Any] | None = None
) -> pd.DataFrame:
    """Run BigQuery-dialect SQL (one statement or a script) on ``con``, transpiled by
    sqlglot (once per text and process); ``@name`` query parameters come from ``params``.
    Returns the result of the last statement when it is a query (else an empty frame)."""
    params = params or {}
    statements = _transpiled(sql)
    for index, (statement, query) in enumerate(statements):
        used = {
            name: _param(value)
            for name, value in params.items()
            if re.search(rf"\${re.escape(name)}\b", statement)
        }
        if index == len(statements) - 1 and query:
            # Through Arrow: dates stay dates and timestamps UTC, as from BigQuery.
            return con.sql(statement, params=used or None).to_arrow_table().to_pandas()
        con.execute(statement, used) if used else con.execute(statement)
    return pd.DataFrame()


@functools.lru_cache(maxsize=256)
def _transpiled(sql: str) -> tuple[tuple[str, bool], ...]:
    """``sql``'s statements in DuckDB's dialect, each with whether it is a query. The
    texts are the package's own (values come as parameters): a few, each run many times
    in a run (every cohort's load), so each is parsed once."""
    import sqlglot  # only SQL of the package's .sql files needs it, not a load

    parsed = [s for s in sqlglot.parse(sql, read="bigquery") if s is not None]
    return tuple((s.sql("duckdb"), isinstance(s, sqlglot.exp.Query)) for s in parsed)


class _Uncached:
    """The catalog holder of a connection that is not kept: nothing is cached."""

    catalog = None


class _Publisher:
    """Publishing on one connection (``shared.Publisher``): the publish script is the
    transaction; a failed one is rolled back here."""

    def __init__(self, warehouse: DuckDBWarehouse, con: duckdb.DuckDBPyConnection) -> None:
        self.warehouse, self.con = warehouse, con

    def select(self, sql: str, params: Mapping[str, Any], *, what: str) -> pd.DataFrame:
        return run_bigquery_sql(self.con, sql, params)

    def staged_columns(self, table: str) -> list[tuple[str, str]]:
        return list(self.warehouse._columns(self.con, STAGING, table).items())

    def ensure_published(self, table: str, columns: list[tuple[str, str]]) -> None:
        self.warehouse._ensure(self.con, table, columns, schema=PUBLISHED)

    def run(self, script: str, params: Mapping[str, Any], *, kind: str, what: str) -> None:
        import duckdb

        try:
            run_bigquery_sql(self.con, script, params)
        except BaseException:
            # Unless the failing statement ended the transaction already (or none began).
            with contextlib.suppress(duckdb.Error):
                self.con.execute("ROLLBACK")
            raise


class DuckDBWarehouse(WarehouseBase):
    staging_dataset = STAGING
    published_dataset = PUBLISHED

    def __init__(self, uri: str) -> None:
        path = uri.removeprefix("duckdb://")
        if not path:
            raise ConfigError(f"{uri!r}: expected duckdb:///path/to/file.duckdb")
        self.uri, self.path = uri, Path(path)

    def connect(self, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
        """A connection of its own to the file, waiting while another process holds its
        write lock (``_session`` is what this class's reads and loads use)."""
        self._require(read_only=read_only)
        con = self._open(read_only=read_only)
        con.execute("SET TimeZone = 'UTC'")
        return con

    def _require(self, *, read_only: bool) -> None:
        """A reader needs the file: it is made by the first load, never by a read."""
        if read_only and not self.path.exists():
            raise WarehouseError(f"{self.path}: warehouse does not exist yet (nothing ingested)")

    def _open(self, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        import duckdb

        if not read_only and not self.path.exists():
            self._create()
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        delay = 0.05
        while True:
            try:
                return duckdb.connect(str(self.path), read_only=read_only)
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                    empty = self.path.is_file() and self.path.stat().st_size == 0
                    hint = (
                        " (the file is empty, nothing was ever loaded into it: left by a run "
                        "killed while it created the file; remove it and run again)"
                        if empty
                        else ""
                    )
                    raise WarehouseError(f"{self.path}: cannot open: {exc}{hint}") from None
                time.sleep(delay)
                delay = min(delay * 2, 1.0)

    def _create(self) -> None:
        """Make the warehouse file whole, then put it in place: DuckDB writes a new file's
        header after creating it, and a run killed in between (the first load of a first
        delivery) left an empty file that no later run could open ("not a valid DuckDB
        database file"). The header is written under a temporary name, and the file is
        linked to its name only if none is there yet (another process may have made it
        meanwhile)."""
        import duckdb

        temporary = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex[:12]}.new")
        try:
            duckdb.connect(str(temporary)).close()
            faults.point("duckdb.create")  # made, not yet in place
            try:
                os.link(temporary, self.path)
            except FileExistsError:
                pass
            except OSError:  # a file system without hard links (SMB, FAT): rename, which
                if not self.path.exists():  # replaces, into a place still empty
                    os.replace(temporary, self.path)
        except (duckdb.Error, OSError) as exc:
            raise WarehouseError(f"{self.path}: cannot create: {exc}") from None
        finally:
            temporary.unlink(missing_ok=True)

    @staticmethod
    def _columns(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> dict[str, str]:
        """Column name → DuckDB type of ``schema.table`` (empty if there is no such table)."""
        rows = con.execute(  # duckdb_columns(): a third cheaper than information_schema
            "SELECT column_name, data_type FROM duckdb_columns() WHERE database_name = "
            "current_database() AND schema_name = ? AND table_name = ? ORDER BY column_index",
            [schema, table],
        ).fetchall()
        return dict(rows)

    def _ensure(
        self,
        con: duckdb.DuckDBPyConnection,
        table: str,
        columns: list[tuple[str, str]],
        *,
        schema: str = STAGING,
        existing: dict[str, str] | None = None,
    ) -> None:
        """Create ``schema.table`` or add the columns it lacks (additive evolution: new
        share_ or result columns). ``columns`` are (name, DuckDB type); ``existing`` the
        table's current columns when the caller already read them (updated in place)."""
        qualified = f"{schema}.{table}"
        if existing is None:
            existing = self._columns(con, schema, table)
        if not existing:
            cols = ", ".join(f"{_quote(n)} {t}" for n, t in columns)
            con.execute(f"CREATE TABLE IF NOT EXISTS {qualified} ({cols})")
            existing.update(columns)
            return
        for name, type_ in columns:
            if name not in existing:
                con.execute(f"ALTER TABLE {qualified} ADD COLUMN {_quote(name)} {type_}")
                existing[name] = type_

    @staticmethod
    def _catalog(con: duckdb.DuckDBPyConnection) -> dict[tuple[str, str], dict[str, str]]:
        """(schema, table) → its columns, of both datasets, in one catalog query
        (``duckdb_columns()``: a fraction of what ``information_schema`` costs)."""
        catalog: dict[tuple[str, str], dict[str, str]] = {}
        for schema, table, column, type_ in con.execute(
            "SELECT schema_name, table_name, column_name, data_type FROM duckdb_columns() "
            "WHERE database_name = current_database() AND schema_name IN (?, ?) "
            "ORDER BY schema_name, table_name, column_index",
            [STAGING, PUBLISHED],
        ).fetchall():
            catalog.setdefault((schema, table), {})[column] = type_
        return catalog

    def _ensure_layout(
        self,
        con: duckdb.DuckDBPyConnection,
        catalog: dict[tuple[str, str], dict[str, str]] | None = None,
    ) -> dict[tuple[str, str], dict[str, str]]:
        """Both datasets with every contract table, the ingest log and the approvals;
        returns the catalog (``catalog``, when given, is the current one: no query)."""
        if catalog is None:
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {PUBLISHED}")
            catalog = self._catalog(con)
        wanted = [
            *((STAGING, spec) for spec in (*TABLES.values(), INGEST_LOG)),
            *((PUBLISHED, spec) for spec in (*TABLES.values(), APPROVALS)),
        ]
        for schema, spec in wanted:
            self._ensure(
                con,
                spec.name,
                [(n, _TYPES[t]) for n, t in spec.columns],
                schema=schema,
                existing=catalog.setdefault((schema, spec.name), {}),
            )
        return catalog

    @contextlib.contextmanager
    def _session(
        self, *, read_only: bool = False
    ) -> Iterator[tuple[duckdb.DuckDBPyConnection, Any]]:
        """A connection and its catalog holder. Within ``connections.shared()`` (``pipeline
        run``) that is a cursor on the process's one shared read-write connection, for
        readers too: DuckDB refuses a read-only connection beside a read-write one in one
        process, and each reopening costs a catalog read and a checkpoint. Else one of
        its own, closed at the end."""
        writing = contextlib.nullcontext() if read_only else connections.writer(str(self.path))
        if connections.is_shared():
            self._require(read_only=read_only)
            with writing, connections.borrow(str(self.path), self._open) as (con, entry):
                con.execute("SET TimeZone = 'UTC'")
                yield con, entry
            return
        with writing:
            con = self.connect(read_only=read_only)
            try:
                yield con, _Uncached()
            finally:
                con.close()

    def replace(
        self,
        run_date: dt.date,
        cohort: str | None,
        tables: dict[str, pd.DataFrame],
        *,
        variant: str | None = None,
    ) -> dict[str, int]:
        import duckdb

        conformed = {
            name: conform(name, frame, run_date=run_date, cohort=cohort, variant=variant)
            for name, frame in tables.items()
        }
        counts: dict[str, int] = {}
        load_id, now = uuid.uuid4().hex, dt.datetime.now(dt.UTC).replace(tzinfo=None)
        with self._session() as (con, cached):
            try:
                con.begin()
                catalog = self._ensure_layout(con, cached.catalog)
                for name, (frame, schema) in conformed.items():
                    self._ensure(
                        con,
                        name,
                        [(n, _TYPES[t]) for n, t in schema],
                        existing=catalog.setdefault((STAGING, name), {}),
                    )
                    run_bigquery_sql(
                        con,
                        f"DELETE FROM {name} WHERE {scope_sql(name, cohort, variant)}",
                        {"run_date": run_date, "cohort": cohort, "variant": variant},
                    )
                    con.register("incoming", frame)
                    con.execute(f"INSERT INTO {name} BY NAME SELECT * FROM incoming")
                    con.unregister("incoming")
                    faults.point("duckdb.load")  # mid-transaction: rows deleted and inserted
                    counts[name] = len(frame)
                log = ", ".join(INGEST_LOG.column_names)
                row = f"({', '.join('?' * len(INGEST_LOG.column_names))})"
                if counts:  # one statement for the load's rows (executemany: one a row)
                    con.execute(
                        f"INSERT INTO {INGEST_LOG.name} ({log}) VALUES "
                        + ", ".join([row] * len(counts)),
                        [v for name, n in counts.items()
                         for v in (run_date, cohort, name, n, load_id, now, variant)],
                    )  # fmt: skip
                con.commit()
                if cohort is None:
                    # The survey's load (every cohort's rows) goes into the file now, while
                    # the programs run, not when the run ends and the connection closes;
                    # readers of the file then replay a short WAL. Skipped (an error) if
                    # another transaction is open: the close does it then.
                    with contextlib.suppress(duckdb.Error):
                        con.execute("CHECKPOINT")
            except BaseException:
                cached.catalog = None
                con.rollback()
                raise
            cached.catalog = catalog
        return counts

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        """Run BigQuery-dialect SQL, transpiled by sqlglot to DuckDB's dialect; ``@name``
        parameters come from ``params``. Unqualified tables are the staging dataset's;
        ``published.TABLE`` reads the published one."""
        import duckdb

        with self._session(read_only=True) as (con, _cached):
            try:
                return run_bigquery_sql(con, sql, params)
            except duckdb.Error as exc:
                raise WarehouseError(f"{self.path}: query failed: {exc}") from None

    def loaded_counts(self, run_date: dt.date) -> pd.DataFrame:
        """Rows per (cohort, variant, table_name) of ``run_date`` in the staging dataset
        (``row_count``); empty when nothing is loaded yet."""
        if not self.path.exists():
            return pd.DataFrame(columns=["cohort", "variant", "table_name", "row_count"])
        with self._session(read_only=True) as (con, _cached):
            if not self._columns(con, STAGING, "pipeline_runs"):
                return pd.DataFrame(columns=["cohort", "variant", "table_name", "row_count"])
            return run_bigquery_sql(con, loaded_counts_sql(), {"run_date": run_date})

    def publication_status(self, run_date: dt.date) -> pd.DataFrame:
        """Per cohort ingested for ``run_date``: when, and its latest sign-off."""
        if not self.path.exists():
            return empty_status()
        with self._session(read_only=True) as (con, _cached):
            if not self._columns(con, STAGING, INGEST_LOG.name):
                return empty_status()
            params = {"run_date": run_date}
            ingested = run_bigquery_sql(
                con, sql_text("sql/status_ingested.sql", published=PUBLISHED), params
            )
            approved = run_bigquery_sql(
                con, sql_text("sql/status_approved.sql", published=PUBLISHED), params
            )
        return merge_status(ingested, approved)

    def previous_estimates(self, run_date: dt.date, cohort: str, program_name: str) -> pd.DataFrame:
        """The cohort's last published estimates of ``program_name`` before ``run_date``."""
        import duckdb

        if not self.path.exists():
            return empty_previous()
        with self._session(read_only=True) as (con, _cached):
            try:
                if not self._columns(con, PUBLISHED, "model_estimates"):
                    return empty_previous()
                params = {"run_date": run_date, "cohort": cohort, "program_name": program_name}
                return run_bigquery_sql(con, previous_estimates_sql(PUBLISHED), params)
            except duckdb.Error as exc:
                raise WarehouseError(
                    f"{self.path}: reading previous estimates failed: {exc}"
                ) from None

    def _staging_place(self) -> str:
        return f"{self.path} (schema {STAGING})"

    @contextlib.contextmanager
    def _publisher(self, run_date: dt.date, cohorts: Sequence[str]) -> Iterator[_Publisher]:
        """``approve``'s operations on one read-write connection with both datasets'
        tables; a DuckDB error is a WarehouseError saying nothing was published."""
        import duckdb

        with self._session() as (con, _cached):
            try:
                self._ensure_layout(con)
                yield _Publisher(self, con)
            except duckdb.Error as exc:
                doing = f"publishing {named_cohorts(cohorts)}" if cohorts else "reading the cohorts"
                raise WarehouseError(
                    f"{self.path}: {doing} of {run_date} failed, nothing was published: {exc}"
                ) from None
