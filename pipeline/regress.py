"""``pipeline regress``: run a program's golden cases through the wrapper and record the
outcome where ``pipeline approve`` finds it.

Each case runs like a cohort of a delivery — ``executors.attempts.prepare``, the chosen
executor, ``collect`` — under ``<storage root>/regress/<slug>/cases/<case>/``, so ECS and
Batch runs read and write S3 like real ones. The outcome of every case lands in
``<storage root>/regress/<slug>/result.json`` (docs/quality.md).
"""

from __future__ import annotations

import io
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline import storage
from pipeline.core.regress import compare
from pipeline.core.spec import GoldenCase, ProgramSpec
from pipeline.errors import InputError, PipelineError
from pipeline.executors import Events, attempts, get_executor
from pipeline.layout import Layout, regress_case, regress_result


@dataclass
class CaseResult:
    name: str
    passed: bool
    diff: pd.DataFrame = field(default_factory=pd.DataFrame)
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        failed = self.diff[~self.diff["ok"]] if len(self.diff) else self.diff
        return {
            "name": self.name,
            "passed": self.passed,
            "error": self.error,
            "compared": len(self.diff),
            "failed": failed.astype(str).to_dict("records") if len(failed) else [],
        }


def _read_local_table(path: str) -> pd.DataFrame:
    if not Path(path).is_file():
        raise InputError("golden case file not found", file=path)
    return pd.read_parquet(path) if path.endswith(".parquet") else pd.read_csv(path)


def run_case(spec: ProgramSpec, case: GoldenCase, executor: str, root: str) -> CaseResult:
    """Run one golden case and compare its results with the expected ones."""
    layout = Layout.of(case.run_date, regress_case(root, spec.slug, case.name))
    expected = _read_local_table(case.expected)
    rows = _read_local_table(case.input)
    buffer = io.BytesIO()
    rows.to_parquet(buffer, index=False)
    storage.write_bytes(layout.cohort_input(case.cohort), buffer.getvalue())
    if not Path(case.frame).is_file():
        raise InputError("golden case frame not found", file=case.frame)
    storage.write_bytes(layout.frame(), Path(case.frame).read_bytes())
    prepared = attempts.prepare(layout, case.cohort, spec)
    try:
        record = get_executor(executor).run(prepared.job, Events())
    finally:
        attempts.publish_log(prepared)
    try:
        results = attempts.collect(layout, prepared, record)
    except PipelineError as exc:
        return CaseResult(case.name, False, error=str(exc))
    diff = compare(results, expected, case.tolerance)
    return CaseResult(case.name, bool(diff["ok"].all()), diff)


def record(spec: ProgramSpec, executor: str, root: str, cases: list[CaseResult]) -> str:
    """Write ``regress/<slug>/result.json``; returns its URI."""
    uri = regress_result(root, spec.slug)
    storage.write_json(
        uri,
        {
            "program_name": spec.name,
            "program_version": spec.version,
            "program_fingerprint": spec.fingerprint,
            "slug": spec.slug,
            "spec": spec.source,
            "executor": executor,
            "passed": all(c.passed for c in cases),
            "at": datetime.now(UTC).isoformat(),
            "cases": [c.to_dict() for c in cases],
        },
    )
    return uri


def find_result(root: str, name: str, version: str, fingerprint: str) -> dict[str, Any] | None:
    """The recorded ``pipeline regress`` of a program build, or None if it never ran
    under ``root`` (a record of another build never counts)."""
    uri = result_uri(root, name, version, fingerprint)
    if not storage.exists(uri):
        return None
    result = storage.read_json(uri)
    if str(result.get("program_fingerprint", fingerprint)) != fingerprint:
        return None
    return result


def result_uri(root: str, name: str, version: str, fingerprint: str) -> str:
    """Where ``pipeline regress`` records the outcome of one program build."""
    return regress_result(root, f"{name}-{version}-{fingerprint}")


# The program builds whose runs produced a date's ingested results: one query for every
# cohort a command approves.
BUILDS_OF_DATE = """
SELECT cohort, COALESCE(variant, '') AS variant, program_name, program_version,
  program_fingerprint, finished_at
FROM pipeline_runs
WHERE run_date = @run_date AND status = 'succeeded'
"""


def program_builds(warehouse: Any, run_date: Any) -> pd.DataFrame:
    """The rows ``approval_gate`` looks up a cohort's program build in (``builds``)."""
    return warehouse.query(BUILDS_OF_DATE, {"run_date": run_date})


@dataclass(frozen=True)
class Gate:
    """What the regression gate says about approving one cohort."""

    program: str  # "name version (fingerprint)" or "" when unknown
    result: dict[str, Any] | None  # the recorded regress result, None if never run
    refused: str = ""  # why approval is refused ("" = allowed)
    note: str = ""  # shown with the approval
    accepted: str = ""  # the reason that overrode a refusal (recorded with the approval)

    @property
    def failed(self) -> bool:
        return self.result is not None and not self.result.get("passed", False)


def regress_command(root: str, spec: str = "") -> str:
    """What to run so that ``pipeline approve`` under ``root`` finds a record."""
    program = shlex.quote(spec) if spec else "SPEC"
    where = shlex.quote(root)
    return (
        f"`pipeline regress --program {program} --root {where}` (or `make regress "
        f"REGRESS_ROOT={where}{' PROGRAMS=' + program if spec else ''}`; Jenkins' Regress "
        "stage records in the storage root of every stack it deploys)"
    )


def approval_gate(
    warehouse: Any,
    root: str,
    run_date: Any,
    cohort: str,
    accept: str,
    *,
    variant: str | None = None,
    spec: str = "",
    builds: pd.DataFrame | None = None,
    find: Callable[[str, str, str, str], dict[str, Any] | None] | None = None,
) -> Gate:
    """Check the golden cases of the program build whose run produced the cohort's
    ingested results of ``variant`` (``pipeline_runs``; any variant when None or ""):
    approval needs a passing ``pipeline regress`` record of exactly that build under
    ``root``. No record, a failed one, or a build that cannot be looked up refuses
    approval unless ``accept`` gives a reason (then ``Gate.accepted`` is that reason).
    Results without a program build (ingested before run manifests; or nothing ingested,
    which the warehouse refuses) pass with a note. ``spec`` names the spec to suggest
    running ``pipeline regress`` on; ``builds`` the date's ``program_builds`` when the
    caller read them already (else they are read here); ``find`` looks up the record
    (``find_result``; a command gating many cohorts of one build passes it cached)."""
    from pipeline.errors import WarehouseError

    reason = accept.strip()
    try:
        builds = program_builds(warehouse, run_date) if builds is None else builds
    except WarehouseError as exc:
        why = f"the program build of cohort {cohort} could not be looked up: {exc}"
        return _refuse_unless_accepted("", None, why, reason, "")
    rows = builds[builds["cohort"] == cohort]
    if variant:
        rows = rows[rows["variant"] == variant]
    rows = rows.sort_values("finished_at", ascending=False, na_position="last")
    if rows.empty or pd.isna(rows.iloc[0]["program_fingerprint"]):
        return Gate("", None, note="program build unknown: golden cases not checked")
    name, version, fingerprint = (
        str(rows.iloc[0][c]) for c in ("program_name", "program_version", "program_fingerprint")
    )
    program = f"{name} {version} ({fingerprint})"
    slug = f"{name}-{version}-{fingerprint}"
    uri = result_uri(root, name, version, fingerprint)
    result = (find or find_result)(root, name, version, fingerprint)
    if result is None:
        why = (
            f"{program} (spec {slug}) has no passing golden-case record: no `pipeline "
            f"regress` record at {uri}"
        )
        todo = f"Run {regress_command(root, spec)}, then approve again"
        return _refuse_unless_accepted(program, None, why, reason, todo)
    if result.get("passed"):
        return Gate(program, result, note=f"{program} passed its golden case(s) ({uri})")
    failed = ", ".join(c["name"] for c in result.get("cases", []) if not c.get("passed"))
    why = (
        f"{program} failed golden case(s) {failed} (pipeline regress, {result.get('at', '')}; "
        f"{uri})"
    )
    return _refuse_unless_accepted(program, result, why, reason, "Fix the program")


def _refuse_unless_accepted(
    program: str, result: dict[str, Any] | None, why: str, reason: str, todo: str
) -> Gate:
    if reason:
        return Gate(program, result, note=f"{why}; accepted: {reason}", accepted=reason)
    todo = f"{todo}; or" if todo else "Or"
    return Gate(
        program,
        result,
        refused=f"{why}. {todo} approve with --accept-regression '<why the new numbers are "
        "right>' (recorded with the approval)",
    )
