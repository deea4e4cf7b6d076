"""The five warehouse tables (docs/contracts/warehouse-tables.md): one definition for every
backend. Types are BigQuery's names; each backend maps them to its own."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pipeline.errors import WarehouseError

STRING, INT64, FLOAT64, BOOL, DATE, TIMESTAMP = (
    "STRING", "INT64", "FLOAT64", "BOOL", "DATE", "TIMESTAMP",
)  # fmt: skip


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[tuple[str, str], ...]
    description: str
    # Extra columns a load may add (schema evolves additively): a prefix, "*" or None.
    extra: str | None = None
    # Columns added to the contract later: a load without them gets NULLs.
    optional: frozenset[str] = frozenset()

    @property
    def column_names(self) -> list[str]:
        return [name for name, _ in self.columns]


_KEY = (("run_date", DATE), ("cohort", STRING))

# Tables whose rows come from one program run: each row carries its variant (the spec's
# slug, name-version-fingerprint) and a load replaces (run_date, cohort, variant) only.
VARIANT_TABLES = ("model_estimates", "validation_checks", "pipeline_runs")
# The run manifest (the wrapper's manifest.json) in pipeline_runs: what exactly ran.
MANIFEST_COLUMNS = (
    ("params", STRING),  # the spec's [params] as JSON (sorted keys)
    ("command", STRING),  # the rendered command as a JSON list
    ("input_sha256", STRING),  # the program's input (cleansed cohort rows)
    ("frame_sha256", STRING),  # the physician frame
    ("results_sha256", STRING),  # the results file the program wrote
    ("image", STRING),  # the spec's image reference
    ("image_digest", STRING),  # what ran: image digest, or the local package version
    ("pipeline_version", STRING),  # this pipeline's version that ran the wrapper
)

TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        Table(
            "survey_responses",
            (
                *_KEY,
                ("response_id", STRING),
                ("respondent_key", STRING),
                ("specialty", STRING),
                ("region", STRING),
                ("facility_type", STRING),
                ("started_at", TIMESTAMP),
                ("submitted_at", TIMESTAMP),
                ("n_patients", INT64),
                ("attention_check", STRING),
                ("source_file", STRING),
                ("source_row", INT64),
            ),
            "Cleansed survey rows; respondent ids are keyed hashes. One share_<treatment> "
            "column (percent) per treatment.",
            extra="share_",
        ),
        Table(
            "survey_rejections",
            (
                *_KEY,
                ("response_id", STRING),
                ("reasons", STRING),
                ("source_file", STRING),
                ("source_row", INT64),
                ("raw", STRING),
            ),
            "Rejected raw rows with every reason that applies (';'-joined) and the raw "
            "values as JSON (respondent_id replaced by its keyed hash).",
        ),
        Table(
            "model_estimates",
            (
                *_KEY,
                ("treatment", STRING),
                ("estimate", FLOAT64),
                ("ci_low", FLOAT64),
                ("ci_high", FLOAT64),
                ("program_name", STRING),
                ("program_version", STRING),
                ("program_fingerprint", STRING),
                ("variant", STRING),
            ),
            "The estimation program's results, one set per program variant (variant = "
            "name-version-fingerprint); extra result columns are kept.",
            extra="*",
            optional=frozenset({"program_fingerprint", "variant"}),
        ),
        Table(
            "validation_checks",
            (
                *_KEY,
                ("check", STRING),
                ("severity", STRING),
                ("passed", BOOL),
                ("detail", STRING),
                ("program_name", STRING),
                ("program_version", STRING),
                ("program_fingerprint", STRING),
                ("variant", STRING),
            ),
            "Plausibility checks of each cohort's results, per program variant.",
            optional=frozenset({"program_fingerprint", "variant"}),
        ),
        Table(
            "pipeline_runs",
            (
                *_KEY,
                ("executor", STRING),
                ("job_id", STRING),
                ("attempt", STRING),
                ("started_at", TIMESTAMP),
                ("finished_at", TIMESTAMP),
                ("exit_code", INT64),
                ("vcpu_seconds", FLOAT64),
                ("memory_gib_seconds", FLOAT64),
                ("cost_usd", FLOAT64),
                ("program_name", STRING),
                ("program_version", STRING),
                ("log_uri", STRING),
                ("host", STRING),
                ("error", STRING),
                ("tracking_url", STRING),
                ("program_fingerprint", STRING),
                ("status", STRING),
                ("variant", STRING),
                *MANIFEST_COLUMNS,
            ),
            "One row per program run (every attempt, failed ones included); status says "
            "how the attempt ended: succeeded, failed or abandoned. The manifest columns "
            "(params ... pipeline_version) say exactly what ran: docs/warehouse.md.",
            optional=frozenset(
                {"tracking_url", "program_fingerprint", "status", "variant"}
                | {name for name, _ in MANIFEST_COLUMNS}
            ),
        ),
        Table(
            "cleansing_summary",
            (*_KEY, ("label", STRING), ("cleansed_rows", INT64), ("rejected_rows", INT64)),
            "Rows per cohort as counted by cleansing (summary.json), for QA's row counts; "
            "the row with a NULL cohort counts rejected rows of no known cohort.",
        ),
        Table(
            "survey_frame",
            (
                *_KEY,
                ("specialty", STRING),
                ("region", STRING),
                ("facility_type", STRING),
                ("n_physicians", INT64),
            ),
            "The physician population (frame.csv), repeated for every cohort so that each "
            "cohort publishes with its frame and QA can find segments without responses.",
        ),
    )
}

# Bookkeeping tables the backends maintain themselves (never loaded through replace()).
INGEST_LOG = Table(
    "ingest_log",
    (
        *_KEY,
        ("table_name", STRING),
        ("row_count", INT64),
        ("load_id", STRING),
        ("ingested_at", TIMESTAMP),
        ("variant", STRING),
    ),
    "One row per table per load into the staging dataset; cohort is NULL for loads that "
    "replace every cohort of the run date (the survey tables), variant is the program "
    "variant of a results load (NULL otherwise).",
)
APPROVALS = Table(
    "approvals",
    (
        *_KEY,
        ("approved_by", STRING),
        ("approved_at", TIMESTAMP),
        ("program_name", STRING),
        ("program_version", STRING),
        ("ingested_at", TIMESTAMP),
        ("published_at", TIMESTAMP),
        ("approval_id", STRING),
        ("program_fingerprint", STRING),
        ("variant", STRING),
        ("accepted_regression", STRING),
    ),
    "Sign-offs: who approved which cohort's results of which program variant, and when "
    "they were published; accepted_regression: why a version whose golden case failed was "
    "approved anyway (NULL otherwise). Lives in the published dataset, written in the publish "
    "transaction.",
)


def infer_type(series: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(series):
        return BOOL
    if pd.api.types.is_integer_dtype(series):
        return INT64
    if pd.api.types.is_float_dtype(series):
        return FLOAT64
    if isinstance(series.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_any_dtype(series):
        return TIMESTAMP
    return STRING


def coerce(series: pd.Series, type_: str) -> pd.Series:
    """``series`` converted to the pandas type that holds the table type ``type_`` (as it
    is when it has that type already)."""
    if type_ == STRING:
        return series if series.dtype == _STRING else series.astype(_STRING)
    if type_ == INT64:
        if series.dtype == _INT64:
            return series
        return pd.to_numeric(series, errors="raise").astype(_INT64)
    if type_ == FLOAT64:
        if series.dtype == np.float64:
            return series
        return pd.to_numeric(series, errors="raise").astype(np.float64)
    if type_ == BOOL:
        return series if series.dtype == _BOOL else series.astype(_BOOL)
    if type_ == DATE:
        return pd.to_datetime(series).dt.date
    return pd.to_datetime(series, utc=True, format="ISO8601")


# the pandas types as objects: a type named by a string is looked up in pandas' registry
# at every conversion (a tenth of a load's conversions)
_STRING, _INT64, _BOOL = pd.StringDtype(), pd.Int64Dtype(), pd.BooleanDtype()


def conform(
    table: str,
    frame: pd.DataFrame,
    *,
    run_date: dt.date,
    cohort: str | None,
    variant: str | None = None,
) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """Add ``run_date`` (and ``cohort``, ``variant`` if given) to ``frame``, coerce every
    column to its table type and order them; returns the frame and its full (name, type)
    schema, contract columns first, then the extra columns this load brings."""
    if table not in TABLES:
        raise WarehouseError(f"unknown table {table!r} (known: {', '.join(TABLES)})")
    spec = TABLES[table]
    # The columns as Series, the load's own values as scalars: one frame is built at the
    # end (a copy of the frame and a column inserted into it at a time cost more than the
    # conversions, at a load's few rows).
    columns: dict[str, Any] = dict(frame.items())
    columns["run_date"] = run_date
    if cohort is not None:
        columns["cohort"] = cohort
    if variant is not None:
        if table not in VARIANT_TABLES or cohort is None:
            raise WarehouseError(
                f"{table}: only {', '.join(VARIANT_TABLES)} of one cohort load per variant"
            )
        columns["variant"] = variant
    for name in spec.optional - set(columns):
        columns[name] = None
    missing = [name for name in spec.column_names if name not in columns]
    if missing:
        raise WarehouseError(f"{table}: load is missing columns {', '.join(missing)}")
    extras = [c for c in columns if c not in spec.column_names]
    allowed = [c for c in extras if spec.extra == "*" or (spec.extra and c.startswith(spec.extra))]
    refused = sorted(set(extras) - set(allowed))
    if refused:
        raise WarehouseError(f"{table}: unexpected columns {', '.join(refused)}")
    schema = [*spec.columns, *((c, infer_type(columns[c])) for c in allowed)]
    out = {}
    for name, type_ in schema:
        values = columns[name]
        if not isinstance(values, pd.Series):  # a scalar, as assigning it would spread it
            values = pd.Series(values, index=frame.index)
        try:
            out[name] = coerce(values, type_)
        except (ValueError, TypeError) as exc:
            raise WarehouseError(f"{table}.{name}: cannot convert to {type_}: {exc}") from None
    return pd.DataFrame(out, index=frame.index), schema


def survey_reference_tables(summary: dict, frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The ``cleansing_summary`` and ``survey_frame`` rows of one run date, from the
    cleansing ``summary`` (summary.json) and the physician ``frame`` (frame.csv), for
    ``Warehouse.replace(run_date, None, ...)`` next to the survey tables."""
    cohorts: dict[str, dict] = summary["cohorts"]
    counts = [
        (code, info["label"], int(info["cleansed"]), int(info["rejected"]))
        for code, info in cohorts.items()
    ]
    known_rejected = sum(int(info["rejected"]) for info in cohorts.values())
    counts.append((None, "(no known cohort)", 0, int(summary["rejected_rows"]) - known_rejected))
    frame_columns = ["specialty", "region", "facility_type", "n_physicians"]
    missing = [c for c in frame_columns if c not in frame.columns]
    if missing:
        raise WarehouseError(f"survey_frame: frame is missing columns {', '.join(missing)}")
    per_cohort = [frame[frame_columns].assign(cohort=code) for code in cohorts]
    return {
        "cleansing_summary": pd.DataFrame(
            counts, columns=["cohort", "label", "cleansed_rows", "rejected_rows"]
        ),
        "survey_frame": (
            pd.concat(per_cohort, ignore_index=True)
            if per_cohort
            else pd.DataFrame(columns=[*frame_columns, "cohort"])
        ),
    }
