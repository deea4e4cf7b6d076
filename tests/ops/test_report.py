"""`pipeline report`: one self-contained HTML page with the expected pieces."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import ClassVar

from tests.ops.conftest import DATE, Run


class Page(HTMLParser):
    """Every start tag with its attributes, the text, and whether the nesting is sound."""

    VOID: ClassVar[set[str]] = {
        "meta",
        "br",
        "img",
        "link",
        "input",
        "hr",
        "circle",
        "line",
        "rect",
        "path",
        "use",
    }

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []
        self.stack: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self.stack[-1] if self.stack else None}>")
            return
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def find(self, tag: str, **attrs: str) -> list[dict[str, str]]:
        return [a for t, a in self.tags if t == tag and attrs.items() <= a.items()]


def test_report_is_self_contained_and_complete(failed_run: Run, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    result = failed_run.cli("report", "--run-date", DATE, "--program", str(failed_run.spec),
                            "--out", str(out))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert str(out) in result.stdout
    html = out.read_text(encoding="utf-8")
    page = Page()
    page.feed(html)
    page.close()
    assert not page.errors and page.stack == [], (page.errors, page.stack)
    text = " ".join(page.text)

    # Self-contained: no script, no external stylesheet, image, font or link target (the
    # SVG namespace names are names, never fetched; url() and href only point inside).
    assert not page.find("script") and not page.find("link") and not page.find("img")
    names = re.sub(r'\sxmlns(:\w+)?="[^"]*"', "", html)
    assert "http://" not in names and "https://" not in names
    assert all(target.startswith("#") for target in re.findall(r"url\(([^)]*)\)", html))
    assert all(target.startswith("#") for target in re.findall(r'href="([^"]*)"', html))
    assert len(set(re.findall(r'\sid="([^"]+)"', html))) == len(re.findall(r'\sid="', html))
    assert {a.get("id") for a in page.find("h2")} >= {
        "status", "estimates", "rejections", "timeline", "validation",
    }  # fmt: skip

    bad, *good = failed_run.codes
    # Estimates with intervals: one chart per cohort with results, a row per treatment.
    summary = json.loads((failed_run.home / "work" / DATE / "cleanse" / "summary.json").read_text())
    for code in good:
        (_chart,) = page.find("svg", **{"aria-label": f"estimates of {code}"})
        treatments = [c.removeprefix("share_") for c in summary["cohorts"][code]["share_columns"]]
        assert treatments
        for treatment in treatments:
            assert treatment in text
    assert not page.find("svg", **{"aria-label": f"estimates of {bad}"})
    assert "no results (the model step is not done)" in text

    # Rejections by reason, with the counts of the cleansing summary.
    (_bars,) = page.find("svg", **{"aria-label": "rejections by reason"})
    for reason, count in summary["rejections_by_reason"].items():
        if count:
            assert reason in text and f"{count:,}" in text

    # Timeline: a bar per step that ran (cleanse, survey ingest, 3 models, 2 × validate
    # and ingest), the failed model outlined.
    (_timeline,) = page.find("svg", **{"aria-label": "timeline of each cohort's steps"})
    spans = [a["id"] for t, a in page.tags if t == "g" and re.search(r"-span-\d+", a.get("id", ""))]
    assert len(spans) == 2 + 3 + 2 * 2
    assert len([a for a in spans if a.endswith("-failed")]) == 1

    # Validation results: every check of every validated cohort, and the failure listed.
    assert "required_columns" in text and "treatments_complete" in text
    assert f"{bad} model" in text and "exited with 3" in text
    assert html.count("<td>passed</td>") >= 2 * 7
