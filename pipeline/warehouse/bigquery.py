"""The BigQuery warehouse (``bigquery://PROJECT/DATASET``), with google-cloud-bigquery.

The URI's dataset is the staging dataset (ingest writes it, QA reads it); the published
dataset is ``[bigquery] published_dataset`` (default ``DATASET_published``). Every table
is created from ``schema.py`` (never autodetected), partitioned by ``run_date`` and
clustered by ``cohort``; schemas only ever gain columns.

A load is idempotent per (run_date, cohort) without touching other cohorts: each table's
rows go by a Parquet **load job** into a fresh per-load table, then **one multi-statement
transaction** deletes the (run_date, cohort) rows and inserts the loaded ones in every
table at once, and the per-load tables are dropped. Never streaming inserts. Why this
design and what to do when it fails: docs/warehouse.md.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import datetime as dt
import io
import logging
import os
import re
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from google.api_core import exceptions as api_exceptions
from google.api_core.retry import Retry
from google.cloud import bigquery

from pipeline import config, faults
from pipeline.errors import ConfigError, WarehouseError
from pipeline.warehouse.schema import (
    APPROVALS,
    BOOL,
    DATE,
    FLOAT64,
    INGEST_LOG,
    INT64,
    STRING,
    TABLES,
    TIMESTAMP,
    VARIANT_TABLES,
    Table,
    coerce,
    conform,
)
from pipeline.warehouse.shared import (
    WarehouseBase,
    empty_previous,
    empty_status,
    loaded_counts_sql,
    merge_status,
    previous_estimates_sql,
    quote,
    scope_sql,
    sql_text,
)

log = logging.getLogger(__name__)

# One replace transaction at a time per staging dataset in this process. BigQuery cancels
# a transaction that mutates a table another transaction is mutating ("concurrent
# update"), and the cohorts of a delivery whose programs started together end together:
# their ingests would fight, each cancelled one retrying after a growing wait, and the
# last could run out of [bigquery] retry_deadline. Queued here they follow one another; the
# retry stays for another process's transactions. (DuckDB: ``connections.writer``.)
_replacing: dict[str, threading.Lock] = {}
_replacing_lock = threading.Lock()


def _replace_lock(dataset: str) -> threading.Lock:
    with _replacing_lock:
        return _replacing.setdefault(dataset, threading.Lock())


LABEL = "survey-pipeline"
_PROJECT = r"(?:[a-z0-9.-]+:)?[a-z][a-z0-9-]{4,28}[a-z0-9]"
_DATASET = r"[A-Za-z0-9_]{1,1024}"
_URI = re.compile(rf"^bigquery://(?P<project>{_PROJECT})/(?P<dataset>{_DATASET})/?$")
_ARROW = {
    STRING: pa.string(),
    INT64: pa.int64(),
    FLOAT64: pa.float64(),
    BOOL: pa.bool_(),
    DATE: pa.date32(),
    TIMESTAMP: pa.timestamp("us", tz="UTC"),
}
# The API answers with legacy names for some types.
_CANONICAL = {"INTEGER": INT64, "FLOAT": FLOAT64, "BOOLEAN": BOOL}
_TRANSIENT_REASONS = {
    "backendError",
    "internalError",
    "rateLimitExceeded",
    "jobBackendError",
    "jobInternalError",
    "jobRateLimitExceeded",
}
_TRANSIENT_TYPES = (
    api_exceptions.InternalServerError,
    api_exceptions.BadGateway,
    api_exceptions.ServiceUnavailable,
    api_exceptions.GatewayTimeout,
)


@dataclass(frozen=True)
class BigQuerySettings:
    """``[bigquery]`` in luigi.cfg."""

    published_dataset: str = ""  # empty: the staging dataset + "_published"
    location: str | None = None  # e.g. asia-northeast1; None: the datasets' own
    retry_initial: float = 1.0  # seconds before the first retry of a transient failure
    retry_maximum: float = 60.0
    retry_deadline: float = 600.0  # give up retrying after this many seconds
    job_timeout: float = 3600.0  # wait at most this long for one job
    load_table_ttl_hours: float = 24.0  # per-load tables left by a killed process expire

    @classmethod
    def from_config(cls) -> BigQuerySettings:
        return cls(
            published_dataset=config.get("bigquery", "published_dataset"),
            location=config.get("bigquery", "location") or None,
            retry_initial=config.get_float("bigquery", "retry_initial", cls.retry_initial),
            retry_maximum=config.get_float("bigquery", "retry_maximum", cls.retry_maximum),
            retry_deadline=config.get_float("bigquery", "retry_deadline", cls.retry_deadline),
            job_timeout=config.get_float("bigquery", "job_timeout", cls.job_timeout),
            load_table_ttl_hours=config.get_float(
                "bigquery", "load_table_ttl_hours", cls.load_table_ttl_hours
            ),
        )


def make_client(project: str, location: str | None) -> bigquery.Client:
    """A BigQuery client: ``PIPELINE_BIGQUERY_ENDPOINT`` (a local server speaking the
    REST API) with anonymous credentials when set, else Application Default Credentials."""
    endpoint = os.environ.get("PIPELINE_BIGQUERY_ENDPOINT", "").strip()
    if endpoint:
        from google.auth.credentials import AnonymousCredentials

        return bigquery.Client(
            project=project,
            location=location,
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": endpoint},
        )
    import google.auth.exceptions

    try:
        return bigquery.Client(project=project, location=location)
    except google.auth.exceptions.DefaultCredentialsError as exc:
        raise ConfigError(
            f"no Google credentials for BigQuery project {project}: run `gcloud auth "
            "application-default login`, or set GOOGLE_APPLICATION_CREDENTIALS to a service "
            f"account key file ({exc})"
        ) from None


def label_value(value: str) -> str:
    """A BigQuery label value: lowercase, [a-z0-9_-], at most 63 characters."""
    return re.sub(r"[^a-z0-9_-]", "_", value.lower())[:63]


def parquet_bytes(frame: pd.DataFrame, schema: list[tuple[str, str]]) -> bytes:
    """``frame`` (conformed) as Parquet with the column types of ``schema``."""
    arrow_schema = pa.schema([pa.field(name, _ARROW[type_]) for name, type_ in schema])
    table = pa.Table.from_pandas(frame, schema=arrow_schema, preserve_index=False, safe=False)
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def _parameter(name: str | None, value: Any) -> Any:
    """A query parameter of ``value``'s type; a non-empty list of dicts is an
    ARRAY<STRUCT> (``@approvals``), its fields typed by their values (None: STRING)."""
    if isinstance(value, list):
        items = [bigquery.StructQueryParameter(None, *(_parameter(k, v) for k, v in d.items()))
                 for d in value]  # fmt: skip
        return bigquery.ArrayQueryParameter(name, "STRUCT", items)
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    if isinstance(value, bool):
        type_ = "BOOL"
    elif isinstance(value, int):
        type_ = "INT64"
    elif isinstance(value, float):
        type_ = "FLOAT64"
    elif isinstance(value, dt.datetime):
        type_ = "TIMESTAMP"
    elif isinstance(value, dt.date):
        type_ = "DATE"
    else:
        type_, value = "STRING", None if value is None else str(value)
    return bigquery.ScalarQueryParameter(name, type_, value)


def _reason(exc: BaseException) -> str:
    errors = getattr(exc, "errors", None) or []
    first = errors[0] if errors else {}
    return first.get("reason", "") if isinstance(first, dict) else ""


def _message(exc: BaseException) -> str:
    errors = getattr(exc, "errors", None) or []
    first = errors[0] if errors else {}
    if isinstance(first, dict) and first.get("message"):
        return str(first["message"])
    return str(getattr(exc, "message", None) or exc)


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, _TRANSIENT_TYPES) or _reason(exc) in _TRANSIENT_REASONS:
        return True
    # Two transactions mutating the same table: BigQuery cancels one of them.
    return "concurrent update" in _message(exc).lower()


class BigQueryJobError(WarehouseError):
    """A BigQuery job failed; ``reason`` is BigQuery's (accessDenied, notFound, ...)."""

    def __init__(self, message: str, *, job_id: str, reason: str) -> None:
        super().__init__(message)
        self.job_id, self.reason = job_id, reason


class _JobFailed(Exception):
    """One attempt of a job failed (internal: retried, then turned into WarehouseError)."""

    def __init__(self, job_id: str, cause: BaseException) -> None:
        super().__init__(f"{job_id}: {cause}")
        self.job_id, self.cause = job_id, cause


class BigQueryWarehouse(WarehouseBase):
    """``bigquery://PROJECT/DATASET``: staging dataset DATASET, published dataset
    ``[bigquery] published_dataset`` (default DATASET_published). Connects on first use."""

    def __init__(
        self,
        uri: str,
        *,
        settings: BigQuerySettings | None = None,
        client_factory: Callable[[str, str | None], bigquery.Client] = make_client,
    ) -> None:
        match = _URI.match(uri)
        if not match:
            raise ConfigError(
                f"{uri!r}: expected bigquery://PROJECT/DATASET (a project id such as "
                "my-project-123 and a dataset name of letters, digits and underscores)"
            )
        self.uri, self.project, self.dataset = uri, match["project"], match["dataset"]
        self.settings = settings or BigQuerySettings.from_config()
        self.published = self.settings.published_dataset or f"{self.dataset}_published"
        if not re.fullmatch(_DATASET, self.published) or self.published == self.dataset:
            raise ConfigError(
                f"[bigquery] published_dataset = {self.published!r}: expected a dataset name "
                f"(letters, digits, underscores) other than the staging dataset {self.dataset}"
            )
        self.staging_dataset = f"{self.project}.{self.dataset}"
        self.published_dataset = f"{self.project}.{self.published}"
        self._client_factory = client_factory
        self._client: bigquery.Client | None = None
        self._layout_ready = False
        self._tables: dict[str, dict[str, str]] = {}  # table id → column types, as last seen

    # ---------------------------------------------------------------- plumbing

    @property
    def client(self) -> bigquery.Client:
        if self._client is None:
            self._client = self._client_factory(self.project, self.settings.location)
        return self._client

    def _ref(self, dataset: str, table: str) -> str:
        return f"{self.project}.{dataset}.{table}"

    def _retry(self) -> Retry:
        return Retry(
            predicate=lambda exc: isinstance(exc, _JobFailed) and _transient(exc.cause),
            initial=self.settings.retry_initial,
            maximum=self.settings.retry_maximum,
            multiplier=2.0,
            timeout=self.settings.retry_deadline,
        )

    def _advice(self, exc: BaseException) -> str:
        """What to do about a failed call or job, from its reason and message."""
        reason, message = _reason(exc), _message(exc)
        datasets = f"{self.project}.{self.dataset} and {self.published_dataset}"
        if reason in ("quotaExceeded", "rateLimitExceeded") or isinstance(
            exc, api_exceptions.TooManyRequests
        ):
            return (
                "a BigQuery quota or rate limit was exceeded: retry later (re-running the task "
                "is safe, it replaces the cohort's rows) or ask for a higher quota "
                "(https://cloud.google.com/bigquery/quotas)"
            )
        if reason == "accessDenied" or isinstance(exc, api_exceptions.Forbidden):
            permission = re.search(r"\b(bigquery\.[a-zA-Z]+\.[a-zA-Z]+)", message)
            needed = permission[1] if permission else ""
            if needed == "bigquery.jobs.create":
                role = f"roles/bigquery.jobUser on project {self.project}"
            elif needed == "bigquery.datasets.create":
                role = (
                    f"roles/bigquery.dataEditor on project {self.project} (or create the "
                    f"datasets {datasets} beforehand)"
                )
            elif needed:
                role = f"roles/bigquery.dataEditor on datasets {datasets}"
            else:
                role = (
                    f"roles/bigquery.jobUser on project {self.project} and "
                    f"roles/bigquery.dataEditor on datasets {datasets}"
                )
            return (
                f"permission denied{f' ({needed})' if needed else ''}: grant the identity "
                f"that runs the pipeline {role}"
            )
        if reason in ("invalid", "invalidQuery") and re.search(
            r"does not match|changed type|cannot be inserted into column|incompatible",
            message,
            re.IGNORECASE,
        ):
            column = re.search(
                r"(?:into column|[Ff]ield|[Cc]olumn)\s+['\"`]?([A-Za-z_]\w*)['\"`]?"
                r"(?=[\s,.:;]*(?:has|which|with|of|\(|$))",
                message,
            )
            return (
                f"schema mismatch{f' on column {column[1]}' if column else ''}: a column "
                "changed its type (did the program change its output?). Keep the type, "
                "rename the column, or migrate the table (docs/warehouse.md, 'Schema "
                "evolution'), then re-run the task"
            )
        if reason == "notFound" or isinstance(exc, api_exceptions.NotFound):
            return (
                f"not found: check the project and dataset of {self.uri} and [bigquery] "
                "location (the pipeline creates missing datasets and tables on ingest)"
            )
        return "fix the cause, then re-run the task (re-running replaces, never duplicates)"

    def _api_error(self, exc: BaseException, what: str) -> WarehouseError:
        return WarehouseError(
            f"BigQuery: {what} failed ({_reason(exc) or type(exc).__name__}): "
            f"{_message(exc)}. {self._advice(exc)}"
        )

    def _api(self, call: Callable[[], Any], what: str) -> Any:
        """A metadata call (datasets, tables) with a clear error."""
        try:
            return call()
        except api_exceptions.GoogleAPICallError as exc:
            raise self._api_error(exc, what) from None

    def _run_job(
        self, start: Callable[[str], Any], *, kind: str, what: str, job_prefix: str
    ) -> tuple[Any, Any]:
        """Start a job (``start(job_id)``), wait for it and return (job, result); retry
        transient failures with backoff, each attempt a new job; turn a failure into a
        WarehouseError naming the job id, what it did and what to do."""
        attempts: list[str] = []

        def attempt() -> tuple[Any, Any]:
            job_id = f"{job_prefix}_{uuid.uuid4().hex[:12]}"
            attempts.append(job_id)
            try:
                job = start(job_id)
                return job, job.result(timeout=self.settings.job_timeout)
            except api_exceptions.GoogleAPICallError as exc:
                raise _JobFailed(job_id, exc) from exc
            except concurrent.futures.TimeoutError:
                # Do not let an abandoned transaction commit later behind our back.
                with contextlib.suppress(api_exceptions.GoogleAPICallError):
                    self.client.cancel_job(job_id, location=self.settings.location)
                raise

        try:
            return self._retry()(attempt)()
        except (_JobFailed, api_exceptions.RetryError) as exc:
            failed = exc if isinstance(exc, _JobFailed) else exc.cause
            if not isinstance(failed, _JobFailed):
                raise WarehouseError(f"BigQuery {kind} job failed: {exc}") from None
            cause, tries = failed.cause, len(attempts)
            retried = f" after {tries} attempts" if tries > 1 else ""
            location = f" --location={self.settings.location}" if self.settings.location else ""
            raise BigQueryJobError(
                f"BigQuery {kind} job {failed.job_id} ({what}) failed{retried}: "
                f"{_reason(cause) or type(cause).__name__}: {_message(cause)}. "
                f"{self._advice(cause)}. Details: `bq show -j{location} "
                f"{self.project}:{failed.job_id}`",
                job_id=failed.job_id,
                reason=_reason(cause),
            ) from None
        except concurrent.futures.TimeoutError:
            raise WarehouseError(
                f"BigQuery {kind} job {attempts[-1]} ({what}) did not finish within "
                f"{self.settings.job_timeout:g}s ([bigquery] job_timeout) and was cancelled: "
                f"see `bq show -j {self.project}:{attempts[-1]}`, then re-run the task"
            ) from None

    def _query_job(
        self, sql: str, params: Mapping[str, Any], *, kind: str, what: str, labels: dict
    ) -> tuple[Any, Any]:
        job_config = bigquery.QueryJobConfig(
            default_dataset=f"{self.project}.{self.dataset}",
            query_parameters=[_parameter(k, v) for k, v in params.items()],
            labels={"pipeline": LABEL, "step": kind, **labels},
        )
        return self._run_job(
            lambda job_id: self.client.query(
                sql,
                job_config=job_config,
                job_id=job_id,
                location=self.settings.location,
                job_retry=None,
            ),
            kind=kind,
            what=what,
            job_prefix=f"pipeline_{kind}",
        )

    def _select(self, sql: str, params: Mapping[str, Any], *, what: str) -> pd.DataFrame:
        _, rows = self._query_job(sql, params, kind="query", what=what, labels={})
        try:
            return rows.to_arrow(create_bqstorage_client=False).to_pandas()
        except api_exceptions.GoogleAPICallError as exc:
            raise self._api_error(exc, f"reading the result of {what}") from None

    # ---------------------------------------------------------------- datasets, tables

    def _ensure_dataset(self, dataset: str, description: str) -> None:
        ref = f"{self.project}.{dataset}"
        try:
            self.client.get_dataset(ref)
            return
        except api_exceptions.NotFound:
            pass
        except api_exceptions.GoogleAPICallError as exc:
            raise self._api_error(exc, f"reading dataset {ref}") from None
        resource = bigquery.Dataset(ref)
        resource.location = self.settings.location
        resource.description = description
        resource.labels = {"pipeline": LABEL}
        self._api(
            lambda: self.client.create_dataset(resource, exists_ok=True),
            f"creating dataset {ref}",
        )

    def _ensure_table(
        self,
        dataset: str,
        spec: Table,
        columns: list[tuple[str, str]] | None = None,
        *,
        adoptable: frozenset[str] = frozenset(),
    ) -> dict[str, str]:
        """Create ``dataset.TABLE`` (partitioned by run_date, clustered by cohort) or add
        the columns it lacks; returns its column name → type. An existing column of
        another type is a schema mismatch (WarehouseError naming the column), except for
        ``adoptable`` columns (empty in this load), which take the table's type."""
        columns = columns or list(spec.columns)
        ref = self._ref(dataset, spec.name)
        known = self._tables.get(ref)
        if known is not None and all(known.get(n) == t for n, t in columns):
            return known
        for _ in range(3):
            table = self._get_or_create_table(ref, spec, columns)
            existing = {f.name: _CANONICAL.get(f.field_type, f.field_type) for f in table.schema}
            mismatched = [
                (n, t)
                for n, t in columns
                if n in existing and existing[n] != t and n not in adoptable
            ]
            if mismatched:
                listed = "; ".join(
                    f"column {n} is {existing[n]} there, this load has {t}" for n, t in mismatched
                )
                raise WarehouseError(
                    f"BigQuery table {ref}: schema mismatch ({listed}): a column changed its "
                    "type (did the program change its output?). Keep the type, rename the "
                    "column, or migrate the table (docs/warehouse.md, 'Schema evolution'), "
                    "then re-run the task"
                )
            added = [bigquery.SchemaField(n, t) for n, t in columns if n not in existing]
            if not added:
                self._tables[ref] = existing
                return existing
            table.schema = [*table.schema, *added]  # additive: new share_ or result columns
            try:
                self.client.update_table(table, ["schema"])
            except api_exceptions.PreconditionFailed:
                continue  # another worker changed the table meanwhile: read it again
            except api_exceptions.GoogleAPICallError as exc:
                names = ", ".join(f.name for f in added)
                raise self._api_error(exc, f"adding columns {names} to table {ref}") from None
            existing.update((f.name, f.field_type) for f in added)
            self._tables[ref] = existing
            return existing
        raise WarehouseError(f"BigQuery table {ref}: its schema keeps changing; re-run the task")

    def _get_or_create_table(
        self, ref: str, spec: Table, columns: list[tuple[str, str]]
    ) -> bigquery.Table:
        try:
            return self.client.get_table(ref)
        except api_exceptions.NotFound:
            pass
        except api_exceptions.GoogleAPICallError as exc:
            raise self._api_error(exc, f"reading table {ref}") from None
        table = bigquery.Table(ref, schema=[bigquery.SchemaField(n, t) for n, t in columns])
        table.time_partitioning = bigquery.TimePartitioning(
            type_=bigquery.TimePartitioningType.DAY, field="run_date"
        )
        # A variant's rows are read and replaced together: cluster them.
        table.clustering_fields = (
            ["cohort", "variant"] if spec.name in VARIANT_TABLES else ["cohort"]
        )
        table.description = spec.description
        table.labels = {"pipeline": LABEL}
        try:
            return self.client.create_table(table)
        except api_exceptions.Conflict:  # a parallel worker created it first
            return self._api(lambda: self.client.get_table(ref), f"reading table {ref}")
        except api_exceptions.GoogleAPICallError as exc:
            raise self._api_error(exc, f"creating table {ref}") from None

    def _ensure_layout(self) -> None:
        """Both datasets with every contract table, the ingest log and the approvals
        (once per process)."""
        if self._layout_ready:
            return
        self._ensure_dataset(
            self.dataset, "Survey pipeline staging: every ingest lands here; QA reads it."
        )
        self._ensure_dataset(
            self.published,
            "Survey pipeline published: signed-off cohorts only (pipeline approve); "
            "clients read the v_* views.",
        )
        for spec in TABLES.values():
            self._ensure_table(self.dataset, spec)
            self._ensure_table(self.published, spec)
        self._ensure_table(self.dataset, INGEST_LOG)
        self._ensure_table(self.published, APPROVALS)
        self._layout_ready = True

    # ---------------------------------------------------------------- loading

    def _load(
        self,
        frame: pd.DataFrame,
        schema: list[tuple[str, str]],
        *,
        table: str,
        run_date: dt.date,
        cohort: str | None,
        load_id: str,
        created: list[str],
    ) -> str:
        """Load ``frame`` into a new per-load table with a Parquet load job; returns its id
        (appended to ``created`` as soon as it exists, for the caller to drop)."""
        name = f"_load_{table}_{run_date:%Y%m%d}_{label_value(cohort or 'all')}_{load_id[:12]}"
        ref = self._ref(self.dataset, name)
        fields = [bigquery.SchemaField(n, t) for n, t in schema]
        labels = {
            "pipeline": LABEL,
            "run_date": label_value(run_date.isoformat()),
            "cohort": label_value(cohort or "all"),
            "table": label_value(table),
        }
        # Dropped after the transaction; expires by itself if this process dies first.
        holder = bigquery.Table(ref, schema=fields)
        holder.expires = dt.datetime.now(dt.UTC) + dt.timedelta(
            hours=self.settings.load_table_ttl_hours
        )
        holder.labels = labels
        self._api(lambda: self.client.create_table(holder), f"creating load table {ref}")
        created.append(ref)
        data = parquet_bytes(frame, schema)
        job_config = bigquery.LoadJobConfig(
            source_format=bigquery.SourceFormat.PARQUET,
            schema=fields,
            write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE,
            create_disposition=bigquery.CreateDisposition.CREATE_IF_NEEDED,
            labels=labels,
        )
        self._run_job(
            lambda job_id: self.client.load_table_from_file(
                io.BytesIO(data),
                ref,
                size=len(data),
                job_id=job_id,
                job_config=job_config,
                location=self.settings.location,
            ),
            kind="load",
            what=f"{len(frame)} rows of {table} for run date {run_date}"
            + (f", cohort {cohort}" if cohort else ", every cohort")
            + f", into {ref}; nothing was replaced",
            job_prefix=f"pipeline_load_{table}",
        )
        return ref

    def _replace_script(
        self,
        cohort: str | None,
        loads: dict[str, tuple[str, list[str], int]],
        variant: str | None = None,
    ) -> str:
        """The transaction: per table, delete the (run_date, cohort[, variant]) rows and
        insert the loaded ones; then log the load. ``loads``: table → (load table,
        columns, rows)."""
        lines = ["BEGIN TRANSACTION;"]
        for table, (load_table, columns, _) in loads.items():
            target = quote(self._ref(self.dataset, table))
            cols = ", ".join(quote(c) for c in columns)
            lines += [
                f"DELETE FROM {target} WHERE {scope_sql(table, cohort, variant)};",
                f"INSERT INTO {target} ({cols}) SELECT {cols} FROM {quote(load_table)};",
            ]
        cohort_value = "@cohort" if cohort is not None else "CAST(NULL AS STRING)"
        variant_value = "@variant" if variant is not None else "CAST(NULL AS STRING)"
        values = ",\n  ".join(
            f"(@run_date, {cohort_value}, '{table}', {rows}, @load_id, CURRENT_TIMESTAMP(), "
            f"{variant_value})"
            for table, (_, _, rows) in loads.items()
        )
        lines += [
            f"INSERT INTO {quote(self._ref(self.dataset, INGEST_LOG.name))} "
            f"({', '.join(INGEST_LOG.column_names)}) VALUES\n  {values};",
            "COMMIT TRANSACTION;",
        ]
        return "\n".join(lines)

    def replace(
        self,
        run_date: dt.date,
        cohort: str | None,
        tables: dict[str, pd.DataFrame],
        *,
        variant: str | None = None,
    ) -> dict[str, int]:
        conformed = {
            name: conform(name, frame, run_date=run_date, cohort=cohort, variant=variant)
            for name, frame in tables.items()
        }
        self._ensure_layout()
        for name, (frame, schema) in list(conformed.items()):
            empty = frozenset(n for n, _ in schema if frame[n].isna().all())
            current = self._ensure_table(self.dataset, TABLES[name], schema, adoptable=empty)
            adopted = [(n, current[n]) for n, _ in schema]
            if adopted != schema:
                frame = frame.assign(**{n: coerce(frame[n], t) for n, t in adopted})
            conformed[name] = (frame, adopted)
        load_id = uuid.uuid4().hex
        created: list[str] = []
        try:
            loads = {
                name: (
                    self._load(
                        frame,
                        schema,
                        table=name,
                        run_date=run_date,
                        cohort=cohort,
                        load_id=load_id,
                        created=created,
                    ),
                    [n for n, _ in schema],
                    len(frame),
                )
                for name, (frame, schema) in conformed.items()
            }
            faults.point("bigquery.load")  # load tables written, nothing replaced yet
            params: dict[str, Any] = {"run_date": run_date, "load_id": load_id}
            if cohort is not None:
                params["cohort"] = cohort
            if variant is not None:
                params["variant"] = variant
            with _replace_lock(self.staging_dataset):  # the loads above ran side by side
                self._query_job(
                    self._replace_script(cohort, loads, variant),
                    params,
                    kind="replace",
                    what=f"replacing {', '.join(loads)} rows of run date {run_date}"
                    + (f", cohort {cohort}" if cohort else ", every cohort")
                    + "; rolled back, nothing was replaced",
                    labels={
                        "run_date": label_value(run_date.isoformat()),
                        "cohort": label_value(cohort or "all"),
                    },
                )
        finally:
            for ref in created:
                try:
                    self.client.delete_table(ref, not_found_ok=True)
                except api_exceptions.GoogleAPICallError as exc:
                    log.warning("could not drop load table %s (it expires by itself): %s", ref, exc)
        return {name: len(frame) for name, (frame, _) in conformed.items()}

    # ---------------------------------------------------------------- reading

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        """Run BigQuery SQL as it is; ``@name`` parameters from ``params``. Unqualified
        tables are the staging dataset's."""
        return self._select(sql, params or {}, what=f"query on {self.project}.{self.dataset}")

    def loaded_counts(self, run_date: dt.date) -> pd.DataFrame:
        """Rows per (cohort, variant, table_name) of ``run_date`` in the staging dataset
        (``row_count``): one query over the run date's partitions; empty when nothing is
        loaded yet."""
        try:
            return self._select(
                loaded_counts_sql(), {"run_date": run_date}, what="counting loaded rows"
            )
        except BigQueryJobError as exc:
            if exc.reason == "notFound":
                return pd.DataFrame(columns=["cohort", "variant", "table_name", "row_count"])
            raise

    def publication_status(self, run_date: dt.date) -> pd.DataFrame:
        """Per cohort ingested for ``run_date``: when, and its latest sign-off."""
        params = {"run_date": run_date}
        try:
            ingested = self._select(
                sql_text("sql/status_ingested.sql", published=self.published_dataset),
                params,
                what="reading the ingest log",
            )
        except BigQueryJobError as exc:
            if exc.reason == "notFound":  # nothing ingested by this pipeline yet
                return empty_status()
            raise
        try:
            approved = self._select(
                sql_text("sql/status_approved.sql", published=self.published_dataset),
                params,
                what="reading the approvals",
            )
        except BigQueryJobError as exc:
            if exc.reason != "notFound":
                raise
            approved = pd.DataFrame()
        return merge_status(ingested, approved)

    # ---------------------------------------------------------------- publishing

    def previous_estimates(self, run_date: dt.date, cohort: str, program_name: str) -> pd.DataFrame:
        """The cohort's last published estimates of ``program_name`` before ``run_date``."""
        try:
            return self._select(
                previous_estimates_sql(self.published_dataset),
                {"run_date": run_date, "cohort": cohort, "program_name": program_name},
                what=f"reading the previous published estimates of cohort {cohort}",
            )
        except BigQueryJobError as exc:
            if exc.reason == "notFound":  # nothing published yet
                return empty_previous()
            raise

    @contextlib.contextmanager
    def _publisher(self, run_date: dt.date, cohorts: Sequence[str]) -> Iterator[_Publisher]:
        """``approve``'s operations as jobs labelled with the cohort (when one; "all" for
        the date's facts, "several" for a transaction of several cohorts), once both
        datasets have their tables; failures are WarehouseErrors already."""
        self._ensure_layout()
        cohort = cohorts[0] if len(cohorts) == 1 else "several" if cohorts else "all"
        labels = {
            "run_date": label_value(run_date.isoformat()),
            "cohort": label_value(cohort),
        }
        yield _Publisher(self, labels)


class _Publisher:
    """Publishing as jobs (``shared.Publisher``): the publish script is one multi-statement
    transaction, which BigQuery rolls back when a statement fails."""

    def __init__(self, warehouse: BigQueryWarehouse, labels: dict[str, str]) -> None:
        self.warehouse, self.labels = warehouse, labels

    def select(self, sql: str, params: Mapping[str, Any], *, what: str) -> pd.DataFrame:
        return self.warehouse._select(sql, params, what=what)

    def staged_columns(self, table: str) -> list[tuple[str, str]]:
        wh = self.warehouse
        ref = wh._ref(wh.dataset, table)
        staged = wh._api(lambda: wh.client.get_table(ref), f"reading table {ref}")
        return [(f.name, _CANONICAL.get(f.field_type, f.field_type)) for f in staged.schema]

    def ensure_published(self, table: str, columns: list[tuple[str, str]]) -> None:
        self.warehouse._ensure_table(self.warehouse.published, TABLES[table], columns)

    def run(self, script: str, params: Mapping[str, Any], *, kind: str, what: str) -> None:
        self.warehouse._query_job(script, params, kind=kind, what=what, labels=self.labels)
