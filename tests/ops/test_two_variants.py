"""Two program variants in one `pipeline run` (docs/variants.md), end to end as a user
runs them: the real CLI in its own process, stdout a pipe (cron, Jenkins) or a terminal.
Every cohort × variant is run, summarised, loaded and shown by status, compare and
report; the per-cohort steps (cleansing, the survey ingest, the data-quality gate) run
once for both; `pipeline rerun` re-runs every variant of the cohort, or those named."""

from __future__ import annotations

import datetime as dt
import json
import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest

from pipeline.cli.rerun import programs_ran
from pipeline.layout import Layout
from pipeline.tasks.params import canonical_program, load_program
from tests.ops.conftest import DATE, NOOP, cohort_codes, home_env, make_home, pipeline
from tests.ops.test_console import in_a_terminal


def variant_spec(path: Path) -> Path:
    """bench/programs/noop.py with a param (seconds to sleep): `SPEC?seconds=X` is a
    variant of it that differs by params only."""
    path.write_text(
        'name = "noop"\nversion = "1.0.0"\n'
        f'command = ["python", "{NOOP}", "{{input}}", "{{output_dir}}", "--cohort", "{{cohort}}",'
        ' "--seconds", "{params.seconds}"]\n'
        'input_format = "csv"\ntimeout = "5m"\n[outputs]\nresults = "estimates.csv"\n'
        "[params]\nseconds = 0.0\n"
    )
    return path


@dataclass
class Delivery:
    home: Path
    programs: list[str]  # as given to --program
    slugs: list[str]  # the variants, in the same order
    codes: list[str]
    stdout: str
    stderr: str

    def cli(self, *args: str):
        return pipeline(self.home, *args)

    def query(self, sql: str) -> list[tuple]:
        with duckdb.connect(str(self.home / "warehouse.duckdb"), read_only=True) as con:
            return con.execute(sql).fetchall()


def program_args(programs: list[str]) -> list[str]:
    return [arg for program in programs for arg in ("--program", program)]


def deliver(home: Path, programs: list[str], codes: list[str] | None = None) -> Delivery:
    result = pipeline(home, "run", "--run-date", DATE, "--local-scheduler", "--workers", "3",
                      *program_args(programs))  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    slugs = [load_program(canonical_program(p)).slug for p in programs]
    return Delivery(home, programs, slugs, codes or cohort_codes(home), result.stdout,
                    result.stderr)  # fmt: skip


@pytest.fixture(scope="module")
def specs(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    spec = variant_spec(tmp_path_factory.mktemp("specs") / "noop.toml")
    return [str(spec), f"{spec}?seconds=0.1"]


@pytest.fixture(scope="module")
def delivered(tmp_path_factory: pytest.TempPathFactory, specs: list[str]) -> Delivery:
    """One `pipeline run` of 3 cohorts × 2 variants, stdout a pipe."""
    return deliver(make_home(tmp_path_factory.mktemp("two-variants")), specs)


def test_the_run_does_every_cohort_of_every_variant(delivered: Delivery) -> None:
    out = delivered.stdout + delivered.stderr
    assert len(set(delivered.slugs)) == 2
    assert "Traceback" not in out
    assert "3 cohort(s) × 2 program(s)" in out
    assert "cohorts: 6 done, 0 failed (3 cohorts × 2 variants)" in out
    for program, slug in zip(delivered.programs, delivered.slugs, strict=True):
        assert f"  variant {slug}: {canonical_program(program)}" in out
    for code in delivered.codes:
        for slug in delivered.slugs:
            # The summary, and the progress lines of the variant's own steps.
            assert re.search(rf"^  {code} \[{slug}\] +done$", out, re.M), out
            assert re.search(rf"^\d\d:\d\d:\d\d {code} \[{slug}\] model started$", out, re.M)
            assert re.search(rf"^\d\d:\d\d:\d\d {code} \[{slug}\] ingest done$", out, re.M)
        # The data-quality gate is one task of the cohort whatever the variant.
        assert len(re.findall(rf"^\d\d:\d\d:\d\d {code} quality done$", out, re.M)) == 1, out
    assert len(re.findall(r"^\d\d:\d\d:\d\d cleanse done$", out, re.M)) == 1
    assert len(re.findall(r"^\d\d:\d\d:\d\d survey ingest done$", out, re.M)) == 1


def test_the_warehouse_holds_both_variants_and_the_survey_once(delivered: Delivery) -> None:
    everything = {(code, slug) for code in delivered.codes for slug in delivered.slugs}
    estimates = delivered.query(
        f"SELECT DISTINCT cohort, variant FROM model_estimates WHERE run_date = '{DATE}'"
    )
    assert set(estimates) == everything
    runs = delivered.query(f"SELECT cohort, variant FROM pipeline_runs WHERE run_date = '{DATE}'")
    assert Counter(runs) == dict.fromkeys(everything, 1)
    summary = json.loads((delivered.home / "work" / DATE / "cleanse" / "summary.json").read_text())
    ((rows, ids),) = delivered.query(
        f"SELECT count(*), count(DISTINCT response_id) FROM survey_responses "
        f"WHERE run_date = '{DATE}'"
    )
    assert rows == ids == summary["cleansed_rows"]


def test_status_shows_a_row_per_cohort_and_variant(delivered: Delivery) -> None:
    result = delivered.cli("status", "--run-date", DATE)
    assert result.returncode == 0, result.stdout + result.stderr
    for code in delivered.codes:
        for slug in delivered.slugs:
            assert re.search(rf"^{code} +{slug}( +done \S+){{5}} +local ", result.stdout, re.M), (
                result.stdout
            )
    assert "cohorts: 6 done" in result.stdout

    result = delivered.cli("status", "--run-date", DATE, "--json")
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert sorted(status["programs"]) == sorted(canonical_program(p) for p in delivered.programs)
    rows = {(c["cohort"], c["variant"]): c for c in status["cohorts"]}
    assert set(rows) == {(code, slug) for code in delivered.codes for slug in delivered.slugs}
    assert {c["state"] for c in rows.values()} == {"done"}
    assert all(c["manifest"]["variant"] == slug for (_, slug), c in rows.items())


def test_compare_puts_the_variants_side_by_side(delivered: Delivery) -> None:
    base, other = delivered.slugs
    result = delivered.cli("compare", "--run-date", DATE, *program_args(delivered.programs))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{other} vs {base}" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr

    result = delivered.cli("compare", "--run-date", DATE, "--json",
                           *program_args(delivered.programs))  # fmt: skip
    assert result.returncode == 0, result.stderr
    comparison = json.loads(result.stdout)
    assert comparison["baseline"] == base and comparison["variants"] == [base, other]
    assert {row["cohort"] for row in comparison["rows"]} == set(delivered.codes)
    assert all(row["difference"] == 0 and row["overlap"] for row in comparison["rows"])
    assert [(c["variant"], c["cohorts"], c["runs"]) for c in comparison["costs"]] == [
        (base, 3, 3),
        (other, 3, 3),
    ]

    # Without --program: every variant of the date.
    result = delivered.cli("compare", "--run-date", DATE, "--json")
    assert result.returncode == 0, result.stderr
    assert sorted(json.loads(result.stdout)["variants"]) == sorted(delivered.slugs)


def test_the_report_shows_both_variants(delivered: Delivery, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    result = delivered.cli("report", "--run-date", DATE, "--out", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    html = out.read_text()
    assert "Variants side by side" in html
    for code in delivered.codes:
        assert f'aria-label="{code}: estimates of each variant"' in html
    for slug in delivered.slugs:
        assert html.count(f">{slug}</td>") == 3  # the status table: one row per cohort
        for code in delivered.codes:  # each variant's own estimates, each under its name
            assert html.count(f'aria-label="estimates of {code} [{slug}]"') == 1, (code, slug)
    # Each heading names its cohort and variant once: "label (code [variant])".
    headings = re.findall(r"<h3>(.*?)</h3>", html)
    estimates = [h for h in headings if "[" in h]
    assert len(estimates) == len(delivered.codes) * len(delivered.slugs), headings
    assert all(h.count("[") == 1 for h in estimates), estimates


def test_a_variant_failing_for_one_cohort_is_named_and_not_shown_as_loaded(
    tmp_path: Path, specs: list[str]
) -> None:
    spec = tmp_path / "failing.toml"
    spec.write_text(
        Path(specs[0]).read_text().replace('"{params.seconds}"]', '"{params.seconds}", '
        '"--fail-cohort", "{params.fail}"]').replace("seconds = 0.0", 'seconds = 0.0\nfail = ""')
    )  # fmt: skip
    home = make_home(tmp_path / "home", respondents=200)
    bad = cohort_codes(home)[0]
    programs = [str(spec), f"{spec}?fail={bad}"]
    result = pipeline(home, "run", "--run-date", DATE, "--local-scheduler", "--workers", "3",
                      *program_args(programs))  # fmt: skip
    assert result.returncode != 0, result.stdout
    good, failing = (load_program(canonical_program(p)).slug for p in programs)
    assert re.search(rf"^  {bad} \[{failing}\] +FAILED at model", result.stdout, re.M)

    text = pipeline(home, "status", "--run-date", DATE)
    assert f"{bad} [{failing}] model FAILED: " in text.stdout, text.stdout
    status = json.loads(pipeline(home, "status", "--run-date", DATE, "--json").stdout)
    rows = {(c["cohort"], c["variant"]): c for c in status["cohorts"]}
    assert rows[bad, failing]["state"] == "failed"
    assert rows[bad, failing]["publication"] == "-"  # only the other variant was loaded
    assert rows[bad, good]["publication"] == "ingested, not approved"


def test_a_terminal_shows_every_cohort_of_every_variant(tmp_path: Path, specs: list[str]) -> None:
    """The live table under a pseudo-terminal: one row per cohort × variant. The first
    variant ran before, so luigi finds its ingest done and looks no further back: its rows
    show every step done all the same."""
    home = make_home(tmp_path / "home", respondents=200)
    deliver(home, specs[:1])
    args = [sys.executable, "-m", "pipeline.cli", "run", "--run-date", DATE,
            "--local-scheduler", "--workers", "3", *program_args(specs)]  # fmt: skip
    code, raw, shown = in_a_terminal(args, home_env(home))
    text = "\n".join(shown)
    assert code == 0, raw
    assert "Traceback" not in raw and "DEBUG" not in text
    assert "cohorts: 6 done, 0 failed" in text
    slugs = [load_program(canonical_program(p)).slug for p in specs]
    for cohort in cohort_codes(home):
        for slug in slugs:
            row = rf"^{cohort} \[{slug}\]( +done){{4}}$"  # quality, model, validate, ingest
            assert len([line for line in shown if re.match(row, line)]) == 1, text


@pytest.fixture
def fresh(tmp_path: Path, specs: list[str]) -> Delivery:
    """A delivery of its own (a rerun changes it; a copy of another would name another
    warehouse, so its ingest markers would not count)."""
    return deliver(make_home(tmp_path / "home", seed=11), specs)


def outputs(home: Path, code: str, slug: str) -> dict[str, int]:
    """The cohort's targets of one variant and its attempts' records, with mtimes."""
    work = home / "work" / DATE
    paths = [
        *(work / "model" / code / slug).rglob("*.json"),
        *(work / "model" / code / slug).rglob("*.parquet"),
        *(work / "validate" / code / slug).rglob("*"),
        *(work / "ingest" / code / slug).rglob("*"),
    ]
    return {str(p.relative_to(work)): p.stat().st_mtime_ns for p in paths if p.is_file()}


def test_rerun_from_model_reruns_every_variant_of_the_cohort(fresh: Delivery) -> None:
    target, *others = fresh.codes
    before = {(c, s): outputs(fresh.home, c, s) for c in fresh.codes for s in fresh.slugs}
    result = fresh.cli("rerun", "--run-date", DATE, "--cohort", target, "--from", "model",
                      "--yes", "--local-scheduler")  # fmt: skip
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "Traceback" not in out
    for slug in fresh.slugs:
        assert f"model/{target}/{slug}/results.parquet" in result.stdout
        assert re.search(rf"^  {target} \[{slug}\] +done$", result.stdout, re.M), out
    # No other program (the champion) ran for the cohort: only its two variants.
    assert sorted(p.name for p in (fresh.home / "work" / DATE / "model" / target).iterdir()) == (
        sorted(fresh.slugs)
    )
    for slug in fresh.slugs:
        after = outputs(fresh.home, target, slug)
        assert (
            after[f"model/{target}/{slug}/results.parquet"]
            != (before[(target, slug)][f"model/{target}/{slug}/results.parquet"])
        )
        for code in others:
            assert outputs(fresh.home, code, slug) == before[(code, slug)]
    runs = fresh.query(
        f"SELECT variant, status FROM pipeline_runs WHERE run_date = '{DATE}' "
        f"AND cohort = '{target}'"
    )
    assert Counter(runs) == {
        **{(slug, "abandoned"): 1 for slug in fresh.slugs},  # superseded by the rerun
        **{(slug, "succeeded"): 1 for slug in fresh.slugs},
    }


def test_rerun_with_program_reruns_only_that_variant(fresh: Delivery) -> None:
    target = fresh.codes[0]
    # The variant with a param override: `SPEC?seconds=0.1` names it here too.
    chosen, (kept_slug, chosen_slug) = fresh.programs[1], fresh.slugs
    kept_before = outputs(fresh.home, target, kept_slug)
    chosen_before = outputs(fresh.home, target, chosen_slug)
    result = fresh.cli("rerun", "--run-date", DATE, "--cohort", target, "--from", "model",
                      "--yes", "--local-scheduler", "--program", chosen)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert kept_slug not in result.stdout
    assert re.search(rf"^  {target} +done$", result.stdout, re.M), result.stdout
    # The other variant's results and attempts (none superseded) are as they were.
    assert outputs(fresh.home, target, kept_slug) == kept_before
    after = outputs(fresh.home, target, chosen_slug)
    key = f"model/{target}/{chosen_slug}/results.parquet"
    assert after[key] != chosen_before[key]
    assert Counter(
        fresh.query(f"SELECT variant, status FROM pipeline_runs WHERE cohort = '{target}'")
    ) == {(chosen_slug, "abandoned"): 1, (chosen_slug, "succeeded"): 1, (kept_slug, "succeeded"): 1}


def test_the_variants_a_date_ran_come_from_its_records(
    delivered: Delivery, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What `pipeline rerun` re-runs without --program: the variants the cohort ran (none
    when it ran none: rerun then takes those of the whole date)."""
    for name, value in home_env(delivered.home).items():
        monkeypatch.setenv(name, value)
    layout = Layout.of(dt.date.fromisoformat(DATE))
    ran = sorted(canonical_program(p) for p in delivered.programs)
    assert programs_ran(layout, None) == ran
    assert programs_ran(layout, [delivered.codes[0]]) == ran
    assert programs_ran(layout, ["no-such-cohort"]) == []
