"""The quality gates' monitors and dashboard (terraform/modules/monitoring), read with
python-hcl2: warning and critical thresholds in order, queries on declared metrics with
declared tags, and a delivery dashboard covering what an operator checks."""

from __future__ import annotations

import re

from pipeline import metrics
from tests.infra.tf import REPO, Module


def module(name: str) -> Module:
    return Module(REPO / "terraform" / "modules" / name)


def test_quality_monitors_have_warning_below_critical():
    text = module("monitoring").text()
    variables = module("monitoring").labelled("variable")
    for key in ("rejection_rate", "drift"):
        warning = variables[f"{key}_warning"]["default"]
        critical = variables[f"{key}_critical"]["default"]
        assert 0 < warning < critical, key
    for name in ("rejection_rate", "data_quality_failed", "estimate_drift"):
        assert re.search(rf"^\s+{name} = \{{", text, re.M), name
    assert "survey_pipeline.quality.rejection_rate{${local.filter}} by {cohort} > " in text
    assert "survey_pipeline.validate.drift{${local.filter}} by {cohort} > " in text
    assert "quality.failures{${local.filter},severity:error} by {cohort,check}" in text
    resource = next(
        body for rtype, name, body in module("monitoring").typed("resource")
        if rtype == "datadog_monitor"
    )  # fmt: skip
    thresholds = resource["monitor_thresholds"][0]
    assert "each.value.critical" in str(thresholds["critical"])
    assert "each.value.warning" in str(thresholds["warning"])


def test_delivery_dashboard_covers_a_delivery():
    dashboards = [
        body for rtype, _, body in module("monitoring").typed("resource")
        if rtype == "datadog_dashboard"
    ]  # fmt: skip
    assert len(dashboards) == 1
    assert dashboards[0]["layout_type"] == "ordered"
    text = (module("monitoring").path / "dashboard.tf").read_text()
    queried = re.findall(
        r"survey_pipeline\.([a-z_.]+)\{\$\{local\.filter\}([^}]*)\}(?: by \{([a-z_,]+)\})?", text
    )
    names = {name for name, _, _ in queried}
    assert {
        "scheduler.task.done", "task.failures", "model.duration", "model.cost_usd",
        "quality.rejection_rate", "quality.reason_rate", "validate.drift", "quality.failures",
    } <= names  # fmt: skip
    for name, scope, by in queried:
        declared = metrics.METRICS[name]
        used = {t.split(":")[0] for t in scope.split(",") if ":" in t} | set(
            filter(None, by.split(","))
        )
        assert used - {"env"} <= set(declared.tags), f"{name} grouped by undeclared tags {used}"
