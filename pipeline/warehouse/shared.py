"""What every backend shares: the package SQL (BigQuery dialect), the publish transaction,
the approval rules and the publication status.

Backends differ in how they load and run SQL, not in what the SQL says: DuckDB runs the
same statements through sqlglot's transpiler.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import pandas as pd

from pipeline.errors import WarehouseError
from pipeline.warehouse.schema import APPROVALS, TABLES

# The tables published per cohort: every contract table, the cohort's rows only.
PUBLISHED_TABLES: tuple[str, ...] = tuple(TABLES)
STATUS_COLUMNS = (
    "cohort",
    "ingested_at",
    "approved_by",
    "approved_at",
    "program_version",
    "published_at",
)


def sql_text(name: str, *, published: str) -> str:
    """The package SQL file ``pipeline/warehouse/<name>`` with ``{published}`` replaced by
    the backend's published dataset (``project.dataset`` on BigQuery)."""
    text = resources.files("pipeline.warehouse").joinpath(name).read_text(encoding="utf-8")
    return text.replace("{published}", published)


def sql_names(folder: str) -> list[str]:
    """The ``.sql`` files of a package folder, sorted by name."""
    root = resources.files("pipeline.warehouse").joinpath(folder)
    return sorted(f"{folder}/{p.name}" for p in root.iterdir() if p.name.endswith(".sql"))


def view_statements(published: str) -> list[str]:
    """``CREATE OR REPLACE VIEW`` statements for the clients' views (``sql/views``), in
    dependency order (a view only reads views whose names sort before it)."""
    statements = []
    for name in sql_names("sql/views"):
        view = name.rsplit("/", 1)[1].removesuffix(".sql")
        body = sql_text(name, published=published).strip().rstrip(";")
        statements.append(f"CREATE OR REPLACE VIEW `{published}.{view}` AS\n{body}")
    return statements


def quote(name: str) -> str:
    return "`" + name.replace("`", "") + "`"


@dataclass(frozen=True)
class Approval:
    """A sign-off that has been published: who, when, which program version, how many
    rows of each table went to the published dataset."""

    run_date: dt.date
    cohort: str
    approved_by: str
    approved_at: dt.datetime
    program_name: str
    program_version: str
    ingested_at: dt.datetime
    approval_id: str
    rows: dict[str, int] = field(default_factory=dict)
    accepted_regression: str | None = None

    def params(self) -> dict[str, Any]:
        """Query parameters of the publish transaction."""
        return {
            "run_date": self.run_date,
            "cohort": self.cohort,
            "approved_by": self.approved_by,
            "approved_at": self.approved_at,
            "program_name": self.program_name,
            "program_version": self.program_version,
            "ingested_at": self.ingested_at,
            "approval_id": self.approval_id,
            "accepted_regression": self.accepted_regression,
        }


def _value(row: pd.Series, name: str) -> Any:
    value = row[name]
    return None if pd.isna(value) else value


def approval_from_check(
    check: pd.DataFrame,
    *,
    run_date: dt.date,
    cohort: str,
    approved_by: str,
    staging: str,
    approval_id: str,
    now: dt.datetime | None = None,
    accepted_regression: str | None = None,
) -> Approval:
    """Turn the one row of ``sql/approval_check.sql`` into an Approval, or refuse with a
    WarehouseError that says why and what to do."""
    if not approved_by.strip():
        raise WarehouseError("--by must name who signs off (e.g. --by 'Jane Doe')")
    row = check.iloc[0]
    where = f"cohort {cohort} of {run_date}"
    rerun = f"`pipeline run --run-date {run_date} --cohort {cohort}`"
    if _value(row, "ingested_at") is None:
        raise WarehouseError(
            f"{where} is not ingested into {staging}: nothing to approve. Run {rerun} first."
        )
    failed = _value(row, "failed_checks")
    if failed:
        raise WarehouseError(
            f"{where} cannot be approved: its error checks failed ({failed}). Fix the program "
            f"or its input and re-run from the model step ({rerun}), then approve."
        )
    if not int(row["validation_checks"]):
        raise WarehouseError(f"{where} has no validation checks in {staging}: re-run {rerun}.")
    if int(row["programs"]) > 1:
        raise WarehouseError(
            f"{where} mixes results of several program versions in {staging}: re-run {rerun}."
        )
    if not int(row["model_estimates"]):
        raise WarehouseError(f"{where} has no estimates in {staging}: re-run {rerun}.")
    if _value(row, "survey_ingested_at") is None:
        raise WarehouseError(
            f"the survey data of {run_date} is not ingested into {staging} (IngestSurvey): "
            f"run `pipeline run --run-date {run_date}` first."
        )
    ingested_at = pd.Timestamp(row["ingested_at"])
    ingested_at = ingested_at.tz_localize("UTC") if ingested_at.tzinfo is None else ingested_at
    return Approval(
        run_date=run_date,
        cohort=cohort,
        approved_by=approved_by.strip(),
        approved_at=now or dt.datetime.now(dt.UTC),
        program_name=str(row["program_name"]),
        program_version=str(row["program_version"]),
        ingested_at=ingested_at.to_pydatetime(),
        approval_id=approval_id,
        accepted_regression=(accepted_regression or "").strip() or None,
    )


def publish_script(staging: str, published: str, columns: dict[str, list[str]]) -> str:
    """The publish transaction of one cohort (BigQuery dialect, query parameters
    ``@run_date, @cohort, @ingested_at, @approved_by, @approved_at, @program_name,
    @program_version, @approval_id, @accepted_regression``): re-checks inside the
    transaction that the cohort's error checks passed and that it was not re-ingested
    since the approval was checked,
    then replaces the cohort's rows of every published table by the staging rows and
    records the sign-off. ``columns`` gives each table's staging columns."""
    scope = "run_date = @run_date AND cohort = @cohort"
    lines = [
        "BEGIN TRANSACTION;",
        # ERROR() fails the query, and BigQuery rolls the transaction back.
        f"SELECT IF(EXISTS(SELECT 1 FROM {quote(f'{staging}.validation_checks')} "
        f"WHERE {scope} AND severity = 'error' AND NOT passed), "
        "ERROR(CONCAT('cohort ', @cohort, ' has failed error checks: not published')), NULL);",
        f"SELECT IF((SELECT MAX(ingested_at) FROM {quote(f'{staging}.ingest_log')} "
        f"WHERE {scope}) IS DISTINCT FROM @ingested_at, "
        "ERROR(CONCAT('cohort ', @cohort, ' was re-ingested while being approved: '"
        ", 'not published; check it again and re-run pipeline approve')), NULL);",
    ]
    for table in PUBLISHED_TABLES:
        cols = ", ".join(quote(c) for c in columns[table])
        lines += [
            f"DELETE FROM {quote(f'{published}.{table}')} WHERE {scope};",
            f"INSERT INTO {quote(f'{published}.{table}')} ({cols}) "
            f"SELECT {cols} FROM {quote(f'{staging}.{table}')} WHERE {scope};",
        ]
    approval_cols = ", ".join(APPROVALS.column_names)
    lines += [
        f"INSERT INTO {quote(f'{published}.approvals')} ({approval_cols}) VALUES (@run_date, "
        "@cohort, @approved_by, @approved_at, @program_name, @program_version, @ingested_at, "
        "CURRENT_TIMESTAMP(), @approval_id, @accepted_regression);",
        "COMMIT TRANSACTION;",
    ]
    return "\n".join(lines)


def merge_status(ingested: pd.DataFrame, approved: pd.DataFrame) -> pd.DataFrame:
    """One row per ingested cohort with its latest sign-off (nulls where none)."""
    if approved.empty:
        approved = pd.DataFrame(columns=list(STATUS_COLUMNS[:1] + STATUS_COLUMNS[2:]))
    merged = ingested[["cohort", "ingested_at"]].merge(approved, on="cohort", how="left")
    for column in ("ingested_at", "approved_at", "published_at"):
        merged[column] = pd.to_datetime(merged[column], utc=True)
    for column in ("approved_by", "program_version"):
        merged[column] = merged[column].astype("string")
    merged["cohort"] = merged["cohort"].astype("string")
    return merged[list(STATUS_COLUMNS)].sort_values("cohort").reset_index(drop=True)


def empty_status() -> pd.DataFrame:
    return merge_status(
        pd.DataFrame({"cohort": pd.Series(dtype="string"), "ingested_at": pd.Series()}),
        pd.DataFrame(),
    )


def counts_sql() -> str:
    """Rows of (@run_date, @cohort) per published table, in the staging dataset."""
    return "\nUNION ALL\n".join(
        f"SELECT '{table}' AS table_name, COUNT(*) AS row_count FROM {table} "
        "WHERE run_date = @run_date AND cohort = @cohort"
        for table in PUBLISHED_TABLES
    )


def previous_estimates_sql(published: str) -> str:
    """``sql/previous_estimates.sql`` (parameters ``@run_date, @cohort, @program_name``)."""
    return sql_text("sql/previous_estimates.sql", published=published)


def empty_previous() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "run_date": pd.Series(dtype="object"),
            "treatment": pd.Series(dtype="string"),
            "estimate": pd.Series(dtype="float64"),
            "program_version": pd.Series(dtype="string"),
        }
    )
