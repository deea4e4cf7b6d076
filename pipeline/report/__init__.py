"""The QA run report: one self-contained HTML page per run date (inline CSS and SVG, no
external resource, no script), read from the run date's targets. The charts are matplotlib
figures inlined as SVG (pipeline/report/charts.py); exact values sit in tables beside them.

Sections: overview (rows, cohorts, program), status (cohorts × steps), estimates with
confidence intervals per cohort and treatment, rejections by reason, a timeline of each
cohort's steps, and every validation check.
"""

from __future__ import annotations

import datetime as dt
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from html import escape
from typing import Any

import pandas as pd

from pipeline import storage
from pipeline.report import charts
from pipeline.report.variants import variants_section
from pipeline.status import RunStatus
from pipeline.status.table import COLUMNS, cost_lines
from pipeline.steps import ROW, STEPS, VARIANT
from pipeline.tasks import RunModel, ValidateResults
from pipeline.tasks.params import load_program

VARIANT_STEPS = tuple(s.name for s in STEPS if s.scope == VARIANT)

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto;
       max-width: 1000px; color: #222; padding: 0 1rem; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; } h2 { margin-top: 2.2rem; border-bottom: 1px
solid #ddd; padding-bottom: .2rem; } h3 { margin: 1.2rem 0 .3rem; font-size: 1.05rem; }
.muted { color: #666; } table { border-collapse: collapse; margin: .5rem 0; }
th, td { border-bottom: 1px solid #e4e4e4; padding: .25rem .6rem; text-align: left;
         vertical-align: top; } th { background: #f6f6f6; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.state-done { color: #2e7d32; } .state-failed { color: #c62828; font-weight: 600; }
.state-running { color: #1565c0; } .state-pending { color: #777; }
tr.fail td { background: #fdecea; } tr.warn td { background: #fff8e1; }
.cards { display: flex; gap: 1rem; flex-wrap: wrap; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: .6rem 1rem; min-width: 9rem; }
.card b { display: block; font-size: 1.4rem; }
svg.chart { display: block; margin: .4rem 0; max-width: 100%; height: auto; }
svg.chart * { stroke-linejoin: round; stroke-linecap: butt; }
svg.chart.empty text { fill: #666; font-size: 12px; }
details { margin: .2rem 0 .8rem; } summary { cursor: pointer; color: #555; }
td.flagged { color: #c62828; font-weight: 600; }
.blocked { color: #c62828; font-weight: 600; }
"""


@dataclass
class CohortData:
    code: str
    label: str
    results: pd.DataFrame | None = None
    checks: pd.DataFrame | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def blocked(self) -> bool:
        """True when a failed error check keeps the estimates out of the warehouse."""
        if self.checks is None or self.checks.empty:
            return False
        failed = self.checks[~self.checks["passed"].astype(bool)]
        return bool((failed["severity"] == "error").any())


def load(status: RunStatus) -> list[CohortData]:
    """Each row's results and checks, where they exist, from the targets (in the order of
    ``status.cohorts``); on S3 what exists comes from one listing of the date and the
    files are read ``storage.READERS`` at a time, as ``pipeline status`` does."""
    labels = {
        code: info.get("label", code)
        for code, info in ((status.summary or {}).get("cohorts") or {}).items()
    }
    date = dt.date.fromisoformat(status.run_date)

    def one(row: Any) -> CohortData:
        common = {"run_date": date, "cohort": row.cohort, "program": row.program}
        # Headed "label (code)": the code is "cohort [variant]" when the date ran several.
        data = CohortData(status.name(row), labels.get(row.cohort, row.cohort))
        results = RunModel(**common).output()["results"].path
        if storage.exists(results):
            data.results = storage.read_parquet(results)
        checks = ValidateResults(**common).output().path
        if storage.exists(checks):
            data.checks = storage.read_parquet(checks)
        return data

    with storage.listed(status.work), ThreadPoolExecutor(storage.READERS) as pool:
        return list(pool.map(one, status.cohorts))


def render(status: RunStatus, cohorts: list[CohortData]) -> str:
    """The whole page."""
    spec = load_program(status.program)
    generated = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    body = [
        f"<h1>Survey pipeline run {escape(status.run_date)}</h1>",
        f'<p class="muted">Program {escape(spec.name)} {escape(spec.version)} · '
        f"warehouse {escape(status.warehouse.split(':', 1)[0])} · generated {generated}</p>",
        _overview(status),
        "<h2 id='status'>Status</h2>",
        _status_table(status),
        "<h2 id='estimates'>Estimates with confidence intervals</h2>",
        _estimates(cohorts),
        variants_section(status, cohorts),
        "<h2 id='rejections'>Rejections by reason</h2>",
        _rejections(status),
        "<h2 id='timeline'>Timeline</h2>",
        _timeline(status),
        "<h2 id='validation'>Validation results</h2>",
        _validation(cohorts),
    ]
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>Run report {escape(status.run_date)}</title><style>{CSS}</style></head>"
        f"<body>{''.join(body)}</body></html>\n"
    )


def _overview(status: RunStatus) -> str:
    s = status.summary or {}
    done = sum(c.state == "done" for c in status.cohorts)
    failed = sum(c.state == "failed" for c in status.cohorts)
    cards = [
        ("raw rows", f"{s['raw_rows']:,}" if s else "–"),
        ("cleansed", f"{s['cleansed_rows']:,}" if s else "–"),
        ("rejected", f"{s['rejected_rows']:,}" if s else "–"),
        ("cohorts done", f"{done} / {len(status.cohorts)}"),
        ("cohorts failed", str(failed)),
        ("compute cost", f"${status.cost().cost_usd:,.2f}"),
    ]
    return (
        "<div class='cards'>"
        + "".join(f"<div class='card'><b>{escape(v)}</b>{escape(k)}</div>" for k, v in cards)
        + "</div>"
    )


def _status_table(status: RunStatus) -> str:
    head = "".join(f"<th>{escape(c.header)}</th>" for c in COLUMNS)
    rows = []
    for cohort in status.cohorts:
        cells = []
        for col in COLUMNS:
            text = col.value(cohort)
            cls = f"state-{text.split()[0]}" if col.header in ROW and text else ""
            cells.append(f"<td class='{cls}'>{escape(text)}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    failures = [
        f"<li><b>{escape(c.cohort)} {escape(step.step)}</b>: {escape(step.error or '')}"
        + (
            f" <span class='muted'>log: {escape(step.log.removeprefix('file://'))}</span>"
            if step.log
            else ""
        )
        + "</li>"
        for c in status.cohorts
        for step in c.steps.values()
        if step.state == "failed"
    ]
    failed_list = f"<ul>{''.join(dict.fromkeys(failures))}</ul>" if failures else ""
    cost = "".join(f"<p class='cost'>{escape(line.strip())}</p>" for line in cost_lines(status))
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>{failed_list}{cost}"


def _estimates(cohorts: list[CohortData]) -> str:
    parts: list[str | None] = []  # None: the next chart drawn
    drawn = []
    for cohort in cohorts:
        parts.append(f"<h3>{escape(cohort.label)} <span class='muted'>({escape(cohort.code)})"
                     "</span></h3>")  # fmt: skip
        if cohort.results is None:
            parts.append("<p class='muted'>no results (the model step is not done)</p>")
            continue
        if cohort.blocked:
            parts.append("<p class='blocked'>A validation error blocked these estimates from "
                         "the warehouse.</p>")  # fmt: skip
        rows = [
            charts.Interval(
                str(r.get("treatment")),
                _num(r.get("estimate")),
                _num(r.get("ci_low")),
                _num(r.get("ci_high")),
                flagged=not (
                    _num(r.get("ci_low")) <= _num(r.get("estimate")) <= _num(r.get("ci_high"))
                ),
            )
            for r in cohort.results.to_dict("records")
        ]
        title = "estimate and confidence interval per treatment"
        drawn.append((rows, title, f"estimates of {cohort.code}"))
        parts += [None, _values_table(rows)]
    svgs = iter(charts.forests(drawn))
    return "".join(next(svgs) if p is None else p for p in parts) or (
        "<p class='muted'>no cohorts</p>"
    )


def _values_table(rows: list[charts.Interval]) -> str:
    body = "".join(
        f"<tr><td>{escape(r.label)}</td>"
        + "".join(
            f"<td class='num{' flagged' if r.flagged and i == 0 else ''}'>{escape(_fmt(v))}</td>"
            for i, v in enumerate((r.estimate, r.low, r.high))
        )
        + "</tr>"
        for r in rows
    )
    return (
        "<details><summary>values</summary><table><tr><th>treatment</th><th>estimate</th>"
        f"<th>ci_low</th><th>ci_high</th></tr>{body}</table></details>"
    )


def _fmt(value: float) -> str:
    if not math.isfinite(value):
        return "–"
    return f"{value:,.6g}" if 1e-3 <= abs(value) < 1e9 or value == 0 else f"{value:.6g}"


def _num(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _rejections(status: RunStatus) -> str:
    s = status.summary
    if not s:
        return "<p class='muted'>not cleansed yet</p>"
    reasons = sorted(
        ((reason, float(n)) for reason, n in s.get("rejections_by_reason", {}).items() if n),
        key=lambda kv: -kv[1],
    )
    chart = charts.bars(
        reasons,
        total=s["raw_rows"] or None,
        title=f"rejected rows by reason, of {s['raw_rows']:,} raw rows",
        label="rejections by reason",
    )
    per_cohort = "".join(
        f"<tr><td>{escape(code)}</td><td class='num'>{info.get('cleansed', 0):,}</td>"
        f"<td class='num'>{info.get('rejected', 0):,}</td></tr>"
        for code, info in (s.get("cohorts") or {}).items()
    )
    return (
        "<p class='muted'>A row rejected for several reasons counts under each.</p>"
        + chart
        + "<table><tr><th>cohort</th><th>cleansed</th><th>rejected</th></tr>"
        + per_cohort
        + "</table>"
    )


def _timeline(status: RunStatus) -> str:
    labels = {
        code: info.get("label", code)
        for code, info in ((status.summary or {}).get("cohorts") or {}).items()
    }
    spans = []
    shared = [status.cohorts[0].steps["cleanse"]] if status.cohorts else []
    for step in [*shared, status.survey_ingest]:
        span = _span("(run date)", step)
        if span:
            spans.append(span)
    for cohort in status.cohorts:
        label = labels.get(cohort.cohort, cohort.cohort)
        row = cohort.cohort if label == cohort.cohort else f"{label} ({cohort.cohort})"
        if len(status.programs) > 1:
            row += f" [{cohort.variant}]"
        for name in VARIANT_STEPS:  # the date's steps are shown once, above
            span = _span(row, cohort.steps[name])
            if span:
                spans.append(span)
    return charts.timeline(
        spans, title="seconds since the first step started", label="timeline of each cohort's steps"
    )


def _span(row: str, step: Any) -> charts.Span | None:
    try:
        start = dt.datetime.fromisoformat(str(step.started_at))
        end = dt.datetime.fromisoformat(str(step.finished_at))
    except ValueError:
        return None
    return charts.Span(row, step.step, start, end, failed=step.state == "failed")


def _validation(cohorts: list[CohortData]) -> str:
    rows = []
    for cohort in cohorts:
        if cohort.checks is None:
            rows.append(f"<tr><td>{escape(cohort.code)}</td><td colspan='4' class='muted'>"
                        "not validated yet</td></tr>")  # fmt: skip
            continue
        for check in cohort.checks.to_dict("records"):
            passed = bool(check["passed"])
            cls = "" if passed else ("fail" if check["severity"] == "error" else "warn")
            rows.append(
                f"<tr class='{cls}'><td>{escape(cohort.code)}</td>"
                f"<td>{escape(str(check['check']))}</td><td>{escape(str(check['severity']))}</td>"
                f"<td>{'passed' if passed else 'FAILED'}</td>"
                f"<td>{escape(str(check['detail']))}</td></tr>"
            )
    return (
        "<table><tr><th>cohort</th><th>check</th><th>severity</th><th>result</th>"
        "<th>detail</th></tr>" + "".join(rows) + "</table>"
    )
