"""The report's variants section: every variant's intervals side by side."""

from __future__ import annotations

import re

import pandas as pd

from pipeline.report.variants import variants_chart, variants_section
from pipeline.status import RunStatus


def results(estimates: list[float], width: float) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "treatment": [f"t{i}" for i in range(len(estimates))],
            "estimate": estimates,
            "ci_low": [e - width for e in estimates],
            "ci_high": [e + width for e in estimates],
        }
    )


def test_chart_has_one_interval_per_variant_cohort_and_treatment() -> None:
    chart = variants_chart(
        {
            "est-1-aaa": {"asthma": results([10, 20], 2), "copd": results([5], 1)},
            "est-1-bbb": {"asthma": results([11, 19], 3)},  # copd failed for this one
        }
    )
    # One chart per cohort (matplotlib): one point and one interval per variant and
    # treatment that has a result.
    assert len(re.findall(r'<g id="[^"]*marks-point-\d+">', chart)) == 5
    assert len(re.findall(r'<g id="[^"]*marks-ci-\d+">', chart)) == 5
    assert "est-1-aaa" in chart and "est-1-bbb" in chart
    tips = re.findall(r"<title>([^<]*)</title>", chart)
    assert "t1 · est-1-bbb: 19 [16, 22]" in tips
    assert 'aria-label="asthma: estimates of each variant"' in chart
    assert 'aria-label="copd: estimates of each variant"' in chart
    assert "No variant has results yet" in variants_chart({"est-1-aaa": {}})


def test_section_only_when_several_variants_ran() -> None:
    status = RunStatus(
        run_date="2026-11-22", work="", logs="", program="p", warehouse="duckdb:///x",
        survey_ingest=None, cohorts=[], programs=["p"],  # type: ignore[arg-type]
    )  # fmt: skip
    assert variants_section(status, []) == ""
    status.programs = ["p", "p?bootstrap=30"]
    assert "Variants side by side" in variants_section(status, [])
