"""The embedded DuckDB warehouse (``duckdb:///path/file.duckdb``)."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import duckdb
import pandas as pd
import sqlglot

from pipeline.errors import ConfigError, WarehouseError
from pipeline.warehouse.schema import TABLES, conform

_TYPES = {
    "STRING": "VARCHAR",
    "INT64": "BIGINT",
    "FLOAT64": "DOUBLE",
    "BOOL": "BOOLEAN",
    "DATE": "DATE",
    "TIMESTAMP": "TIMESTAMPTZ",
}
# DuckDB lets one process write a file at a time; parallel luigi workers take turns.
LOCK_WAIT_SECONDS = 120.0


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class DuckDBWarehouse:
    def __init__(self, uri: str) -> None:
        path = uri.removeprefix("duckdb://")
        if not path:
            raise ConfigError(f"{uri!r}: expected duckdb:///path/to/file.duckdb")
        self.uri, self.path = uri, Path(path)

    def connect(self, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
        """Open the file, waiting while another process holds its write lock."""
        if read_only and not self.path.exists():
            raise WarehouseError(f"{self.path}: warehouse does not exist yet (nothing ingested)")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        delay = 0.05
        while True:
            try:
                return duckdb.connect(str(self.path), read_only=read_only)
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                    raise WarehouseError(f"{self.path}: cannot open: {exc}") from None
                time.sleep(delay)
                delay = min(delay * 2, 1.0)

    def _ensure(
        self, con: duckdb.DuckDBPyConnection, table: str, schema: list[tuple[str, str]]
    ) -> None:
        cols = ", ".join(f"{_quote(n)} {_TYPES[t]}" for n, t in schema)
        con.execute(f"CREATE TABLE IF NOT EXISTS {table} ({cols})")
        existing = {
            row[0]
            for row in con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = ?",
                [table],
            ).fetchall()
        }
        for name, type_ in schema:
            if name not in existing:  # additive evolution: new share_ or result columns
                con.execute(f"ALTER TABLE {table} ADD COLUMN {_quote(name)} {_TYPES[type_]}")

    def replace(
        self, run_date: dt.date, cohort: str | None, tables: dict[str, pd.DataFrame]
    ) -> dict[str, int]:
        conformed = {
            name: conform(name, frame, run_date=run_date, cohort=cohort)
            for name, frame in tables.items()
        }
        counts: dict[str, int] = {}
        con = self.connect()
        try:
            con.begin()
            for name, (frame, schema) in conformed.items():
                if name not in TABLES:
                    raise WarehouseError(f"unknown table {name!r}")
                self._ensure(con, name, schema)
                where, params = "run_date = ?", [run_date]
                if cohort is not None:
                    where, params = where + " AND cohort = ?", [run_date, cohort]
                con.execute(f"DELETE FROM {name} WHERE {where}", params)
                con.register("incoming", frame)
                con.execute(f"INSERT INTO {name} BY NAME SELECT * FROM incoming")
                con.unregister("incoming")
                counts[name] = len(frame)
            con.commit()
        except BaseException:
            con.rollback()
            raise
        finally:
            con.close()
        return counts

    def query(self, sql: str) -> pd.DataFrame:
        """Run BigQuery-dialect SQL, transpiled by sqlglot to DuckDB's dialect."""
        statements = sqlglot.transpile(sql, read="bigquery", write="duckdb")
        con = self.connect(read_only=True)
        try:
            for statement in statements[:-1]:
                con.execute(statement)
            return con.execute(statements[-1]).fetchdf()
        finally:
            con.close()
