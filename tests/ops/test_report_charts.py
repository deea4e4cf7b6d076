"""The report's charts with extreme data: huge, tiny and negative values, intervals wider
than everything else, missing values and long Japanese labels. Every data mark must lie
inside its axes (checked on the SVG itself), every label inside the figure, no two tick
labels on top of each other, and the same data must give the same bytes."""

from __future__ import annotations

import datetime as dt
import itertools
import re
import subprocess
import sys
import warnings
import xml.etree.ElementTree as ET

import pandas as pd
import pytest

from pipeline import report
from pipeline.report import charts
from pipeline.status import CohortStatus, RunStatus, StepStatus
from tests.conftest import ESTIMATOR_SPEC

SVG = "{http://www.w3.org/2000/svg}"
XLINK = "{http://www.w3.org/1999/xlink}"
MARK = re.compile(r"-(marks-[\w-]+|span-\d+(-failed)?)$")
LONG_LABEL = "慢性炎症性脱髄性多発神経炎および多巣性運動ニューロパチーの長期管理"
COHORTS = {
    "huge": ("非常に大きな値の疾患" * 3, [
        ("metformin", 3.2e15, 1.1e15, 9.9e15), ("dpp4i", 1.0, 0.5, 2.0),
    ]),
    "tiny": ("微小値", [
        ("a", 1e-12, 5e-13, 2e-12), ("b", -3e-12, -9e-12, 1e-13), ("c", 0.0, 0.0, 0.0),
    ]),
    "negative-wide": (LONG_LABEL, [
        (LONG_LABEL + "（新規治療薬）", -4.5e8, -7e8, -2e8),
        ("wide", 10.0, -1e12, 1e12),
        ("outside its interval", 50.0, 60.0, 70.0),  # flagged: drawn in red
        ("missing", float("nan"), 1.0, 2.0),  # drawn as "(no value)", no mark
        ("infinite", 1.0, float("-inf"), float("inf")),
    ]),
    "one-value": ("単一値", [("only", -7.0, -7.0, -7.0)]),
}  # fmt: skip
T0 = dt.datetime(2026, 11, 22, 1, 0, tzinfo=dt.UTC)


def step(name: str, start: float, seconds: float, state: str = "done") -> StepStatus:
    begin = T0 + dt.timedelta(seconds=start)
    return StepStatus(name, f"{name}-task", state, begin.isoformat(),
                      (begin + dt.timedelta(seconds=seconds)).isoformat(), seconds)  # fmt: skip


def extreme_run() -> tuple[RunStatus, list[report.CohortData]]:
    cohorts, data = [], []
    for i, (code, (label, rows)) in enumerate(COHORTS.items()):
        steps = {
            "cleanse": step("cleanse", 0, 0.004),
            "model": step("model", 1 + i, [0.0, 5400.0, 3.0, 0.2][i],
                          "failed" if code == "tiny" else "done"),
            "validate": step("validate", 5500, 0.01),
            "ingest": step("ingest", 5501, 2.0),
        }  # fmt: skip
        cohorts.append(CohortStatus(code, steps))
        frame = pd.DataFrame(rows, columns=["treatment", "estimate", "ci_low", "ci_high"])
        data.append(report.CohortData(code, label, results=frame))
    reasons = {"duplicate": 3_000_000_000, "speeder": 1, "attention_check": 0,
               LONG_LABEL: 12_345}  # fmt: skip
    summary = {
        "raw_rows": 4_000_000_000, "cleansed_rows": 999_987_654, "rejected_rows": 3_000_012_346,
        "rejections_by_reason": reasons,
        "cohorts": {code: {"label": label, "cleansed": 1, "rejected": 0}
                    for code, (label, _) in COHORTS.items()},
    }  # fmt: skip
    status = RunStatus("2026-11-22", "/work", "/logs", str(ESTIMATOR_SPEC), "duckdb:///x.duckdb",
                       step("ingest_survey", 2, 1.5), cohorts, summary)  # fmt: skip
    return status, data


def numbers(d: str) -> list[tuple[float, float]]:
    values = [float(v) for v in re.findall(r"-?\d+(?:\.\d+)?(?:e-?\d+)?", d)]
    assert len(values) % 2 == 0, d
    return list(zip(values[::2], values[1::2], strict=True))


def bbox(points: list[tuple[float, float]]) -> tuple[float, float, float, float]:
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    return min(xs), min(ys), max(xs), max(ys)


def mark_points(group: ET.Element) -> list[tuple[float, float]]:
    """The coordinates of a mark's paths and marker uses (marker shapes in <defs> are
    relative to their anchor and are left out)."""
    defs = {id(e) for d in group.iter(f"{SVG}defs") for e in d.iter()}
    points = []
    for element in group.iter():
        if id(element) in defs:
            continue
        if element.tag == f"{SVG}path":
            points += numbers(element.get("d", ""))
        elif element.tag == f"{SVG}use":
            points.append((float(element.get("x", "0")), float(element.get("y", "0"))))
    return points


@pytest.fixture(scope="module")
def page() -> str:
    status, data = extreme_run()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. "Glyph ... missing from font(s)"
        return report.render(status, data)


def chart_elements(html: str) -> dict[str, ET.Element]:
    found = {}
    for text in re.findall(r"<svg class=\"chart\".*?</svg>", html, flags=re.S):
        root = ET.fromstring(text)
        found[root.get("aria-label")] = root
    return found


def test_every_data_mark_lies_inside_its_axes(page: str) -> None:
    found = chart_elements(page)
    assert set(found) == {
        *(f"estimates of {code}" for code in COHORTS),
        "rejections by reason",
        "timeline of each cohort's steps",
    }
    for label, root in found.items():
        (area,) = [g for g in root.iter(f"{SVG}g") if g.get("id", "").endswith("-plotarea")]
        x0, y0, x1, y1 = bbox(numbers(area.find(f"{SVG}path").get("d")))
        marks = [g for g in root.iter(f"{SVG}g") if MARK.search(g.get("id", ""))]
        assert marks, label
        for mark in marks:
            points = mark_points(mark)
            assert points, (label, mark.get("id"))
            for x, y in points:
                assert x0 - 0.01 <= x <= x1 + 0.01 and y0 - 0.01 <= y <= y1 + 0.01, (
                    f"{label}: {mark.get('id')} at ({x}, {y}) outside its axes "
                    f"({x0}, {y0})-({x1}, {y1})"
                )


def test_each_finite_estimate_and_interval_is_drawn(page: str) -> None:
    found = chart_elements(page)
    for code, (_label, rows) in COHORTS.items():
        ids = [g.get("id", "") for g in found[f"estimates of {code}"].iter(f"{SVG}g")]
        finite = [r for r in rows if all(pd.notna(v) and abs(v) != float("inf") for v in r[1:])]
        assert len([i for i in ids if "-marks-point-" in i]) == len(finite), code
        assert len([i for i in ids if "-marks-ci-" in i]) == len(finite), code
    timeline = found["timeline of each cohort's steps"]
    spans = [g.get("id") for g in timeline.iter(f"{SVG}g") if MARK.search(g.get("id", ""))]
    assert len(spans) == 2 + 4 * 3 and len([s for s in spans if s.endswith("-failed")]) == 1
    bars = found["rejections by reason"]
    drawn = [g for g in bars.iter(f"{SVG}g") if "-marks-bar-" in g.get("id", "")]
    assert len(drawn) == 3  # reasons with no rejected row are left out


def test_the_page_is_the_same_for_the_same_data(page: str) -> None:
    status, data = extreme_run()
    again = report.render(status, data)
    strip = re.compile(r"generated \d{4}-\d\d-\d\d \d\d:\d\d UTC")
    assert strip.sub("", again) == strip.sub("", page)
    assert "<metadata" not in page and "dc:date" not in page


def test_labels_fit_the_figure_and_ticks_do_not_overlap(monkeypatch: pytest.MonkeyPatch) -> None:
    """Checked on the figures themselves (text is drawn as paths in the SVG)."""
    figures = []
    render = charts._svg
    monkeypatch.setattr(charts, "_svg", lambda fig, *a: figures.append(fig) or render(fig, *a))
    status, data = extreme_run()
    report.render(status, data)
    assert len(figures) == len(COHORTS) + 2
    for fig in figures:
        renderer = fig._get_renderer()  # the renderer savefig laid the figure out with
        drawn = fig.get_tightbbox(renderer)  # everything drawn, labels included (inches)
        page_box = fig.bbox_inches
        assert (page_box.x0 - 0.01 <= drawn.x0 and drawn.x1 <= page_box.x1 + 0.01
                and page_box.y0 - 0.01 <= drawn.y0 and drawn.y1 <= page_box.y1 + 0.01), (
            fig.axes[0].get_title(), drawn, page_box)  # fmt: skip
        for ax in fig.axes:
            for axis in (ax.xaxis, ax.yaxis):
                low, high = sorted(axis.get_view_interval())
                boxes = [
                    label.get_window_extent(renderer)
                    for tick, label in zip(axis.get_ticklocs(), axis.get_ticklabels(), strict=True)
                    if low <= tick <= high and label.get_text()
                ]
                assert boxes
                for a, b in itertools.pairwise(boxes):
                    assert not a.overlaps(b), (a, b)


def test_other_commands_do_not_import_matplotlib() -> None:
    probe = (
        "import sys, pipeline.cli; pipeline.cli.build_parser(); print('matplotlib' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            timeout=60, check=True)  # fmt: skip
    assert result.stdout.strip() == "False"


def test_a_wide_reports_charts_are_drawn_in_processes_the_same_and_in_order() -> None:
    """A report of 200 cohorts draws hundreds of forest charts: on more than one core
    they are drawn by forked processes, byte for byte what one process draws, in order."""
    wanted = [
        ([charts.Interval(f"t{k}", 10.0 * i + k, 10.0 * i, 10.0 * i + 9) for k in range(3)],
         f"cohort {i}", f"estimates of c{i}")
        for i in range(3 * charts.MIN_CHARTS_PER_WORKER)
    ]  # fmt: skip
    drawn = charts.forests(wanted)
    assert drawn == [charts.forest(rows, title=t, label=label) for rows, t, label in wanted]
    assert len(set(drawn)) == len(wanted)
