"""Quality gates against each backend (DuckDB file, BigQuery through the real client and
the wire fake): the drift check of ValidateResults reads the last published delivery
through ``Warehouse.previous_estimates``; approvals record an accepted regression."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest

from pipeline import storage
from pipeline.core.regress import DIFF_COLUMNS
from pipeline.core.spec import load_spec
from pipeline.errors import ValidationFailed, WarehouseError
from pipeline.layout import Layout
from pipeline.regress import CaseResult, approval_gate, record
from pipeline.tasks import IngestResults, ValidateResults
from pipeline.warehouse import Warehouse
from tests.ops.conftest import noop_spec
from tests.warehouse.helpers import results, runs, survey
from tests.warehouse.test_semantics import select

D0, D1 = dt.date(2026, 10, 22), dt.date(2026, 11, 22)


@pytest.fixture
def spec_path(pipeline_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Program ``est`` (the helpers' program name), a new version 2.0."""
    monkeypatch.delenv("DD_AGENT_HOST", raising=False)
    path = noop_spec(pipeline_home / "est.toml")
    path.write_text(
        path.read_text().replace(
            'name = "noop"\nversion = "1.0.0"', 'name = "est"\nversion = "2.0"'
        )
    )
    return path


def stage_results(spec_path: Path, cohort: str, values: list[float]) -> None:
    """What RunModel leaves for one cohort of D1: its cleansed rows and the results."""
    spec, layout = load_spec(spec_path), Layout.of(D1)
    treatments = [f"t{i}" for i in range(len(values))]
    rows = pd.DataFrame({"cohort": [cohort], **{f"share_{t}": [50.0] for t in treatments}})
    storage.write_parquet(layout.cohort_input(cohort), rows)
    storage.write_parquet(
        layout.model(cohort, spec.slug, "results.parquet"),
        pd.DataFrame({"treatment": treatments, "estimate": values,
                      "ci_low": [v * 0.9 for v in values], "ci_high": [v * 1.1 for v in values]}),
    )  # fmt: skip
    run = runs("2.0").assign(program_name="est", program_fingerprint=spec.fingerprint)
    run = run.assign(
        started_at=run["started_at"].astype(str), finished_at=run["finished_at"].astype(str)
    )
    storage.write_json(layout.attempt(cohort, spec.slug, "a1", "run.json"), run.iloc[0].to_dict())
    storage.write_json(layout.model(cohort, spec.slug, "run.json"), run.iloc[0].to_dict())


def test_drifted_delivery_gives_a_warning_and_an_error_check(
    warehouse: Warehouse, spec_path: Path
) -> None:
    # D0: cohorts a and b published with estimates 100 and 200 (program est 1.0).
    warehouse.replace(D0, None, survey({"a": 3, "b": 3}))
    for cohort in ("a", "b"):
        warehouse.replace(D0, cohort, results([100.0, 200.0]))
        warehouse.approve(D0, cohort, "Jane")
    # D1 with est 2.0: a moved 30 % (warning), b 90 % (error), c is new.
    warehouse.replace(D1, None, survey({"a": 3, "b": 3, "c": 3}))
    for cohort, values in {"a": [130.0, 200.0], "b": [100.0, 20.0], "c": [5.0]}.items():
        stage_results(spec_path, cohort, values)
    checks = {}
    for cohort in ("a", "b", "c"):
        task = ValidateResults(run_date=D1, cohort=cohort, program=str(spec_path),
                               executor="local", warehouse=warehouse.uri)  # fmt: skip
        task.run()
        table = storage.read_parquet(task.output().path).set_index("check")
        checks[cohort] = table.loc["estimates_vs_previous"]
    assert (checks["a"]["severity"], bool(checks["a"]["passed"])) == ("warning", False)
    assert "t0 100.000 -> 130.000 (30.0%" in checks["a"]["detail"]
    assert f"since {D0}" in checks["a"]["detail"]
    assert (checks["b"]["severity"], bool(checks["b"]["passed"])) == ("error", False)
    assert "t1 200.000 -> 20.000 (90.0%" in checks["b"]["detail"]
    assert bool(checks["c"]["passed"]) and "first delivery" in checks["c"]["detail"]

    # Ingest: the checks land in validation_checks; the error blocks b's estimates.
    IngestResults(run_date=D1, cohort="a", program=str(spec_path), executor="local",
                  warehouse=warehouse.uri).run()  # fmt: skip
    with pytest.raises(ValidationFailed, match="estimates_vs_previous"):
        IngestResults(run_date=D1, cohort="b", program=str(spec_path), executor="local",
                      warehouse=warehouse.uri).run()  # fmt: skip
    rows = select(
        warehouse,
        "SELECT cohort, severity, passed, program_version FROM validation_checks "
        "WHERE run_date = @d AND `check` = 'estimates_vs_previous' ORDER BY cohort",
        d=D1,
    )
    assert rows == [("a", "warning", False, "2.0"), ("b", "error", False, "2.0")]
    assert select(warehouse, "SELECT COUNT(*) FROM model_estimates WHERE run_date = @d AND "
                  "cohort = 'b'", d=D1) == [(0,)]  # fmt: skip
    warehouse.approve(D1, "a", "Ken")  # a warning does not block
    with pytest.raises(WarehouseError, match="estimates_vs_previous"):
        warehouse.approve(D1, "b", "Ken")


def test_previous_estimates_is_the_last_published_delivery_of_the_program(
    warehouse: Warehouse,
) -> None:
    assert warehouse.previous_estimates(D1, "a", "est").empty  # nothing at all yet
    warehouse.replace(D0, None, survey({"a": 3}))
    warehouse.replace(D0, "a", results([1.0, 2.0]))
    assert warehouse.previous_estimates(D1, "a", "est").empty  # ingested, not published
    warehouse.approve(D0, "a", "Jane")
    previous = warehouse.previous_estimates(D1, "a", "est")
    assert list(previous["treatment"]) == ["t0", "t1"]
    assert list(previous["estimate"]) == [1.0, 2.0]
    assert str(previous["run_date"].iloc[0]) == str(D0)
    assert warehouse.previous_estimates(D0, "a", "est").empty  # only earlier dates
    assert warehouse.previous_estimates(D1, "a", "other").empty  # only the same program


def test_a_failed_golden_case_needs_an_accepted_reason(
    warehouse: Warehouse, spec_path: Path, pipeline_home: Path
) -> None:
    spec = load_spec(spec_path)
    warehouse.replace(D1, None, survey({"a": 3}))
    data = results([10.0, 20.0], version="2.0")
    data["pipeline_runs"] = data["pipeline_runs"].assign(
        program_fingerprint=spec.fingerprint, status="succeeded"
    )
    warehouse.replace(D1, "a", data)
    root = str(pipeline_home / "work")
    assert "no `pipeline regress` record at" in approval_gate(warehouse, root, D1, "a", "").refused
    diff = pd.DataFrame(
        [("t0", "estimate", "1", "2", "+1", "exact", False)], columns=list(DIFF_COLUMNS)
    )
    record(spec, "local", root, [CaseResult("small", False, diff)])
    gate = approval_gate(warehouse, root, D1, "a", "")
    assert "failed golden case(s) small" in gate.refused and "--accept-regression" in gate.refused
    reason = "new weighting agreed with the client (ticket 42)"
    gate = approval_gate(warehouse, root, D1, "a", reason)
    assert not gate.refused and gate.failed
    warehouse.approve(D1, "a", "Ken", accepted_regression=reason)
    assert select(
        warehouse, "SELECT cohort, approved_by, accepted_regression FROM `{published}.approvals`"
    ) == [("a", "Ken", reason)]
