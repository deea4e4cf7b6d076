"""What every backend shares: the package SQL (BigQuery dialect), the publish transaction,
the approval rules and sequence (``WarehouseBase.approve``) and the publication status.

Backends differ in how they load and run SQL, not in what the SQL says: DuckDB runs the
same statements through sqlglot's transpiler.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Protocol

import pandas as pd

from pipeline.errors import WarehouseError
from pipeline.warehouse.schema import TABLES, VARIANT_TABLES

# The tables published per cohort: every contract table, the cohort's rows only.
PUBLISHED_TABLES: tuple[str, ...] = tuple(TABLES)
STATUS_COLUMNS = (
    "cohort",
    "ingested_at",
    "approved_by",
    "approved_at",
    "program_version",
    "published_at",
    "variant",
)
# How SQL compares a row's variant with @variant: rows loaded before variants existed
# (NULL) are the variant ''.
VARIANT_OF_ROW = "COALESCE(variant, '')"
# The most cohorts one publish transaction signs off: a BigQuery script's statements each
# run as a child job, seconds each, so a delivery's cohorts are published together, in
# bounded transactions (query parameters and DML sizes stay small).
PUBLISH_BATCH = 100


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


def views_script(published: str) -> str:
    """``view_statements`` as one script."""
    return "\n".join(f"{s};" for s in view_statements(published))


def quote(name: str) -> str:
    return "`" + name.replace("`", "") + "`"


@dataclass(frozen=True)
class Approval:
    """A sign-off that has been published: who, when, which program variant, how many
    rows of each table went to the published dataset."""

    run_date: dt.date
    cohort: str
    approved_by: str
    approved_at: dt.datetime
    program_name: str
    program_version: str
    ingested_at: dt.datetime
    approval_id: str
    variant: str = ""
    program_fingerprint: str = ""
    rows: dict[str, int] = field(default_factory=dict)
    accepted_regression: str | None = None

    def struct(self) -> dict[str, Any]:
        """The sign-off as one element of the publish transaction's ``@approvals``."""
        return {
            c: getattr(self, c) for c in APPROVAL_COLUMNS if c not in ("run_date", "published_at")
        }


def _value(row: pd.Series, name: str) -> Any:
    value = row[name]
    return None if pd.isna(value) else value


@dataclass(frozen=True)
class ApprovalFacts:
    """What approving cohorts of one run date is decided on, read once for the date (two
    queries, however many cohorts a command approves): one row per (cohort, variant) of
    the staging dataset (``sql/approval_facts.sql``) and its rows per table
    (``loaded_counts_sql``). The publish transaction checks again what could have changed
    since they were read: a failed error check, a new ingest."""

    run_date: dt.date
    checks: pd.DataFrame
    counts: pd.DataFrame

    def variants(self, cohort: str) -> pd.DataFrame:
        """The cohort's variants with validation checks (``choose_variant``'s choice)."""
        rows = self.checks[
            (self.checks["cohort"] == cohort) & (self.checks["validation_checks"] > 0)
        ]
        return rows.reset_index(drop=True)

    def check(self, cohort: str, variant: str) -> pd.DataFrame:
        """The one row ``approval_from_check`` turns into a sign-off or a refusal; with
        nulls and zeros when nothing of the cohort's variant is in the staging dataset."""
        rows = self.checks[(self.checks["cohort"] == cohort) & (self.checks["variant"] == variant)]
        if len(rows):
            return rows.reset_index(drop=True)
        survey = self.checks["survey_ingested_at"].max()  # the date's: on every row
        empty = {c: [None] for c in self.checks.columns}
        empty.update(cohort=[cohort], variant=[variant], validation_checks=[0], programs=[0],
                     model_estimates=[0], survey_ingested_at=[survey])  # fmt: skip
        return pd.DataFrame(empty)

    def rows(self, cohort: str, variant: str) -> dict[str, int]:
        """The rows publishing copies per published table: the variant's of the variant
        tables, the cohort's of the others."""
        counts = self.counts[self.counts["cohort"] == cohort]
        return {
            table: int(
                counts[
                    (counts["table_name"] == table)
                    & ((counts["variant"] == variant) if table in VARIANT_TABLES else True)
                ]["row_count"].sum()
            )
            for table in PUBLISHED_TABLES
        }


def choose_variant(
    found: pd.DataFrame,
    wanted: str | None,
    *,
    run_date: dt.date,
    cohort: str,
    champion: str | None = None,
) -> str:
    """The variant to approve among the ``found`` ones (``ApprovalFacts.variants``): ``wanted``
    when named; else the ``champion`` (the configured program's slug) when ingested; else
    the only variant when it is the champion-less or pre-variant one. Refuses with what
    there is."""
    have = [str(v) for v in found["variant"]] if len(found) else []
    listed = ", ".join(v or "(no variant: loaded before variants)" for v in have) or "none"
    where = f"cohort {cohort} of {run_date}"
    if wanted is not None:
        if wanted in have:
            return wanted
        raise WarehouseError(
            f"{where}: variant {wanted or '(none)'} is not ingested (ingested variants: "
            f"{listed}). Run it with `pipeline run --run-date {run_date} --cohort {cohort} "
            "--program SPEC`, or approve another with --variant SLUG."
        )
    if champion is not None and champion in have:
        return champion
    if len(have) == 1 and (champion is None or have[0] == ""):
        return have[0]
    if champion is not None and have:
        raise WarehouseError(
            f"{where}: the champion variant {champion} ([pipeline] program) is not ingested "
            f"(ingested variants: {listed}): name the one to publish with --variant SLUG "
            "or --program SPEC"
        )
    if len(have) > 1:
        raise WarehouseError(
            f"{where} has several variants ingested ({listed}): name the one to publish "
            "with --variant SLUG or --program SPEC"
        )
    return have[0] if have else ""


def approval_from_check(
    check: pd.DataFrame,
    *,
    run_date: dt.date,
    cohort: str,
    approved_by: str,
    staging: str,
    approval_id: str,
    variant: str = "",
    now: dt.datetime | None = None,
    accepted_regression: str | None = None,
) -> Approval:
    """Turn the row of ``ApprovalFacts.check`` (for ``variant``) into an Approval,
    or refuse with a WarehouseError that says why and what to do."""
    if not approved_by.strip():
        raise WarehouseError("--by must name who signs off (e.g. --by 'Jane Doe')")
    row = check.iloc[0]
    where = f"cohort {cohort} of {run_date}" + (f" (variant {variant})" if variant else "")
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
        variant=variant,
        program_fingerprint=str(_value(row, "program_fingerprint") or ""),
        accepted_regression=(accepted_regression or "").strip() or None,
    )


def publish_script(staging: str, published: str, columns: dict[str, list[str]]) -> str:
    """The publish transaction of a batch of sign-offs of one run date (BigQuery dialect,
    query parameters ``@run_date`` and ``@approvals``: an array of ``Approval.struct()``,
    one per cohort). Re-checks inside the transaction, for every cohort, that its
    variant's error checks passed and that it was not re-ingested since the approval was
    checked — naming the first cohort that fails either, and then nothing is published —
    then replaces the cohorts' rows of every published table by the staging rows — of
    each cohort's approved variant only, so the published dataset never mixes variants —
    and records the sign-offs. Set-based: the same statements for one cohort or hundreds.
    ``columns`` gives each table's staging columns."""
    approving = "UNNEST(@approvals) AS a"
    by_variant = f"a.cohort = s.cohort AND a.variant = {_variant_of('s')}"

    def refuse(offending: str, message: str) -> str:
        # ERROR() fails the query, and BigQuery rolls the transaction back.
        return (
            f"SELECT IF(bad IS NULL, NULL, ERROR(CONCAT('cohort ', bad, {message}))) "
            f"FROM (SELECT MIN(a.cohort) AS bad FROM {approving} {offending});"
        )

    lines = [
        "BEGIN TRANSACTION;",
        refuse(
            f"JOIN {quote(f'{staging}.validation_checks')} AS s ON {by_variant} "
            "WHERE s.run_date = @run_date AND s.severity = 'error' AND NOT s.passed",
            "' has failed error checks: not published'",
        ),
        refuse(
            f"LEFT JOIN (SELECT s.cohort, {_variant_of('s')} AS variant, MAX(s.ingested_at) "
            f"AS ingested_at FROM {quote(f'{staging}.ingest_log')} AS s "
            "WHERE s.run_date = @run_date GROUP BY 1, 2) AS l "
            "ON l.cohort = a.cohort AND l.variant = a.variant "
            "WHERE l.ingested_at IS DISTINCT FROM a.ingested_at",
            "' was re-ingested while being approved: not published; check it again and "
            "re-run pipeline approve'",
        ),
    ]
    for table in PUBLISHED_TABLES:
        cols = ", ".join(quote(c) for c in columns[table])
        picked = by_variant if table in VARIANT_TABLES else "a.cohort = s.cohort"
        lines += [
            f"DELETE FROM {quote(f'{published}.{table}')} WHERE run_date = @run_date "
            f"AND cohort IN (SELECT a.cohort FROM {approving});",
            f"INSERT INTO {quote(f'{published}.{table}')} ({cols}) "
            f"SELECT {', '.join('s.' + quote(c) for c in columns[table])} "
            f"FROM {quote(f'{staging}.{table}')} AS s JOIN {approving} ON {picked} "
            "WHERE s.run_date = @run_date;",
        ]
    lines += [
        f"INSERT INTO {quote(f'{published}.approvals')} ({', '.join(APPROVAL_COLUMNS)}) "
        f"SELECT {', '.join(_approval_value(c) for c in APPROVAL_COLUMNS)} FROM {approving};",
        "COMMIT TRANSACTION;",
    ]
    return "\n".join(lines)


APPROVAL_COLUMNS = (
    "run_date", "cohort", "approved_by", "approved_at", "program_name", "program_version",
    "ingested_at", "published_at", "approval_id", "program_fingerprint", "variant",
    "accepted_regression",
)  # fmt: skip


def _variant_of(alias: str) -> str:
    return f"COALESCE({alias}.variant, '')"


def _approval_value(column: str) -> str:
    if column == "run_date":
        return "@run_date"
    if column == "published_at":
        return "CURRENT_TIMESTAMP()"
    return f"a.{column}"


class Publisher(Protocol):
    """A backend's primitive operations for publishing cohorts: on one DuckDB
    connection, or as BigQuery jobs. ``what`` says what a call does, for error messages."""

    def select(self, sql: str, params: Mapping[str, Any], *, what: str) -> pd.DataFrame:
        """Run a query (BigQuery dialect; unqualified tables are the staging dataset's)."""
        ...

    def staged_columns(self, table: str) -> list[tuple[str, str]]:
        """(name, type) of the staging dataset's ``table``, in the backend's types."""
        ...

    def ensure_published(self, table: str, columns: list[tuple[str, str]]) -> None:
        """Create the published dataset's ``table`` or add the ``columns`` it lacks."""
        ...

    def run(self, script: str, params: Mapping[str, Any], *, kind: str, what: str) -> None:
        """Run a statement or script (BigQuery dialect) that writes; ``kind`` is ``views``
        or ``publish``."""
        ...


class WarehouseBase(ABC):
    """The approval sequence both backends follow; each gives its ``Publisher`` (how it
    queries, evolves tables and runs a script) and where its datasets are."""

    # How package SQL names the staging and the published dataset.
    staging_dataset: str
    published_dataset: str
    # The staging columns the published tables and the views were last made for (_publish)
    _published_for: dict[str, list[tuple[str, str]]] | None = None

    @abstractmethod
    def _publisher(
        self, run_date: dt.date, cohorts: Sequence[str]
    ) -> AbstractContextManager[Publisher]:
        """The backend's operations for publishing ``cohorts`` (none: for reading the
        date's facts), with both datasets' tables in place; a failure of the backend
        leaves as a WarehouseError."""

    def _staging_place(self) -> str:
        """Where the staging dataset is, as refusals name it."""
        return self.staging_dataset

    def approval_facts(self, run_date: dt.date) -> ApprovalFacts:
        """What approving cohorts of ``run_date`` is decided on (``ApprovalFacts``)."""
        with self._publisher(run_date, []) as publisher:
            return self._facts(publisher, run_date)

    def _facts(self, publisher: Publisher, run_date: dt.date) -> ApprovalFacts:
        params = {"run_date": run_date}
        checks = publisher.select(
            sql_text("sql/approval_facts.sql", published=self.published_dataset),
            params,
            what=f"checking the cohorts of {run_date} before approval",
        )
        counts = publisher.select(
            loaded_counts_sql(), params, what=f"counting the rows of {run_date}"
        )
        return ApprovalFacts(run_date, checks, counts)

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
        """The sign-off of (run_date, cohort) with one program ``variant`` (default: the
        ``champion`` when ingested, else the only one), decided on ``facts``
        (``approval_facts``: a command approving many cohorts reads them once; else read
        now), with the rows it will publish; nothing is written. Refuses (WarehouseError)
        a cohort that is not ingested, has several variants and none was named, whose
        error checks failed or that mixes program versions."""
        if facts is None:
            facts = self.approval_facts(run_date)
        elif facts.run_date != run_date:
            raise ValueError(f"facts of {facts.run_date} given to approve {run_date}")
        chosen = choose_variant(
            facts.variants(cohort), variant, run_date=run_date, cohort=cohort, champion=champion
        )
        approval = approval_from_check(
            facts.check(cohort, chosen),
            run_date=run_date,
            cohort=cohort,
            approved_by=approved_by,
            staging=self._staging_place(),
            approval_id=uuid.uuid4().hex,
            variant=chosen,
            accepted_regression=accepted_regression,
        )
        return dataclasses.replace(approval, rows=facts.rows(cohort, chosen))

    def publish(self, approvals: Sequence[Approval]) -> list[Approval | WarehouseError]:
        """Publish checked sign-offs (``check_approval``) of one run date, one cohort each:
        up to ``PUBLISH_BATCH`` cohorts in one transaction (``publish_script``). When a
        transaction of several fails (a cohort re-ingested or failed since its facts were
        read, a conflict in the backend), each half of its cohorts is tried again in a
        transaction of its own, down to single cohorts: one cohort's refusal never holds
        back the others, and costs about two transactions per halving, not one per cohort.
        Returns, in order, each sign-off as published or the WarehouseError that refused
        it."""
        if len({a.run_date for a in approvals}) > 1:
            raise ValueError("publish() takes sign-offs of one run date")
        if len({a.cohort for a in approvals}) < len(approvals):
            raise ValueError("publish() takes one sign-off per cohort")
        outcomes: list[Approval | WarehouseError] = []
        for start in range(0, len(approvals), PUBLISH_BATCH):
            outcomes += self._publish_halving(list(approvals[start : start + PUBLISH_BATCH]))
        return outcomes

    def _publish_halving(self, batch: list[Approval]) -> list[Approval | WarehouseError]:
        try:
            self._publish(batch)
        except WarehouseError as exc:
            if len(batch) == 1:
                return [exc]
            half = len(batch) // 2
            return self._publish_halving(batch[:half]) + self._publish_halving(batch[half:])
        return list(batch)

    def approve(
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
        """Record the sign-off of (run_date, cohort) and publish its rows of every table
        from the staging to the published dataset in one transaction: ``check_approval``
        then ``publish`` of the one cohort. Refuses with a WarehouseError (nothing
        changes)."""
        approval = self.check_approval(
            run_date, cohort, approved_by, variant=variant, champion=champion,
            accepted_regression=accepted_regression, facts=facts,
        )  # fmt: skip
        (outcome,) = self.publish([approval])
        if isinstance(outcome, WarehouseError):
            raise outcome
        return outcome

    def _publish(self, approvals: list[Approval]) -> None:
        """Give the published tables the staging tables' columns, (re)create the views
        and run the publish transaction of ``approvals``. The tables and views are made
        again only when the staging columns differ from the ones this object made them
        for: doing it for every transaction was 7 table updates and a script of 5 view
        statements each (on BigQuery, seconds each)."""
        run_date = approvals[0].run_date
        with self._publisher(run_date, [a.cohort for a in approvals]) as publisher:
            columns = {table: publisher.staged_columns(table) for table in PUBLISHED_TABLES}
            if columns != self._published_for:
                for table, cols in columns.items():
                    publisher.ensure_published(table, cols)
                publisher.run(
                    views_script(self.published_dataset),
                    {},
                    kind="views",
                    what=f"creating the clients' views in {self.published_dataset}",
                )
                self._published_for = columns
            script = publish_script(
                self.staging_dataset,
                self.published_dataset,
                {table: [name for name, _ in cols] for table, cols in columns.items()},
            )
            publisher.run(
                script,
                {"run_date": run_date, "approvals": [a.struct() for a in approvals]},
                kind="publish",
                what=f"publishing {named_cohorts([a.cohort for a in approvals])} of {run_date} to "
                f"{self.published_dataset}; rolled back, nothing was published",
            )


def named_cohorts(cohorts: Sequence[str]) -> str:
    """How messages name the cohorts of a publish transaction."""
    if len(cohorts) == 1:
        return f"cohort {cohorts[0]}"
    shown = ", ".join(cohorts[:3]) + (", …" if len(cohorts) > 3 else "")
    return f"{len(cohorts)} cohorts ({shown})"


def merge_status(ingested: pd.DataFrame, approved: pd.DataFrame) -> pd.DataFrame:
    """One row per ingested cohort with its latest sign-off (nulls where none)."""
    if approved.empty:
        approved = pd.DataFrame(columns=list(STATUS_COLUMNS[:1] + STATUS_COLUMNS[2:]))
    merged = ingested[["cohort", "ingested_at"]].merge(approved, on="cohort", how="left")
    for column in ("ingested_at", "approved_at", "published_at"):
        merged[column] = pd.to_datetime(merged[column], utc=True)
    for column in ("approved_by", "program_version", "variant"):
        merged[column] = merged[column].astype("string")
    merged["cohort"] = merged["cohort"].astype("string")
    return merged[list(STATUS_COLUMNS)].sort_values("cohort").reset_index(drop=True)


def empty_status() -> pd.DataFrame:
    return merge_status(
        pd.DataFrame({"cohort": pd.Series(dtype="string"), "ingested_at": pd.Series()}),
        pd.DataFrame(),
    )


def loaded_counts_sql() -> str:
    """Rows per (cohort, variant, table) of @run_date in the staging dataset: one cheap
    query (COUNT over the run date's partition) that tells whether ingest markers still
    hold (``IngestResults.complete``)."""
    return "\nUNION ALL\n".join(
        "SELECT cohort, "
        + (VARIANT_OF_ROW if table in VARIANT_TABLES else "''")
        + f" AS variant, '{table}' AS table_name, COUNT(*) AS row_count FROM {table} "
        "WHERE run_date = @run_date GROUP BY 1, 2"
        for table in PUBLISHED_TABLES
    )


def scope_sql(table: str, cohort: str | None, variant: str | None) -> str:
    """The rows a ``replace`` of (@run_date[, @cohort[, @variant]]) removes from
    ``table``. A variant load also removes the cohort's rows loaded before variants
    existed (variant NULL): they were the one variant the cohort had."""
    scope = "run_date = @run_date"
    if cohort is not None:
        scope += " AND cohort = @cohort"
    if variant is not None and table in VARIANT_TABLES:
        scope += " AND (variant = @variant OR variant IS NULL)"
    return scope


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
