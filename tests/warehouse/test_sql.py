"""The SQL shipped in the package: BigQuery dialect that sqlglot reads strictly and
transpiles for DuckDB, with no placeholder other than ``{published}``."""

from __future__ import annotations

import re

import pytest
import sqlglot

from pipeline.warehouse.schema import TABLES
from pipeline.warehouse.shared import publish_script, sql_names, sql_text, view_statements

FILES = [*sql_names("qa"), *sql_names("sql"), *sql_names("sql/views")]


@pytest.mark.parametrize("name", FILES)
def test_package_sql_is_strict_bigquery(name: str) -> None:
    text = sql_text(name, published="p-1.ds_published")
    assert not re.search(r"\{\w+\}", text), "unknown placeholder"
    statements = sqlglot.parse(text, read="bigquery", error_level=sqlglot.ErrorLevel.RAISE)
    assert len(statements) == 1
    sqlglot.transpile(text, read="bigquery", write="duckdb", error_level=sqlglot.ErrorLevel.RAISE)


def test_views_and_publish_script_parse() -> None:
    for statement in view_statements("p-1.ds_published"):
        sqlglot.parse_one(statement, read="bigquery", error_level=sqlglot.ErrorLevel.RAISE)
    script = publish_script(
        "p-1.ds", "p-1.ds_published", {t: TABLES[t].column_names for t in TABLES}
    )
    parsed = sqlglot.parse(script, read="bigquery", error_level=sqlglot.ErrorLevel.RAISE)
    # BEGIN, two guards, DELETE + INSERT per table, the approval, COMMIT
    assert len(parsed) == 1 + 2 + 2 * len(TABLES) + 1 + 1
