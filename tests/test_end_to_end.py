"""The whole pipeline on small generated data: `pipeline run` as a user runs it, with the
local scheduler in a temporary PIPELINE_HOME, asserting on the DuckDB warehouse."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from pipeline.core.rawdata import read_cohorts
from tests.conftest import ESTIMATOR_SPEC, REPO, run_cli

DATE = "2026-11-22"


@pytest.fixture
def home(pipeline_home: Path) -> Path:
    result = run_cli("sample-data", "--out", str(pipeline_home / "raw"), "--cohorts", "3",
                     "--respondents", "400", "--seed", "7")  # fmt: skip
    assert result.returncode == 0, result.stderr
    return pipeline_home


def cohort_codes(home: Path) -> list[str]:
    return list(read_cohorts(home / "raw")["code"])


def query(home: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        return con.execute(sql).fetchall()


def snapshot(home: Path) -> dict[str, pd.DataFrame]:
    """Every contract table's content, except run bookkeeping that differs by design."""
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        return {
            table: con.execute(f"SELECT * FROM {table} ORDER BY ALL").df()
            for table in (
                "survey_responses",
                "survey_rejections",
                "model_estimates",
                "validation_checks",
            )
        }


def assert_same_tables(a: dict[str, pd.DataFrame], b: dict[str, pd.DataFrame]) -> None:
    assert a.keys() == b.keys()
    for table in a:
        assert len(a[table]) > 0, table
        pd.testing.assert_frame_equal(a[table], b[table], obj=table)


def test_full_run_fills_every_table(home: Path) -> None:
    result = run_cli("run", "--run-date", DATE, "--local-scheduler", "--workers", "3")
    assert result.returncode == 0, result.stdout + result.stderr
    codes = cohort_codes(home)
    assert f"cohorts: {len(codes)} done, 0 failed" in result.stdout
    summary = json.loads((home / "work" / DATE / "cleanse" / "summary.json").read_text())
    # Nothing is lost: every raw row is either cleansed or rejected, in the warehouse too.
    assert summary["raw_rows"] == summary["cleansed_rows"] + summary["rejected_rows"]
    assert query(home, "SELECT count(*) FROM survey_responses") == [(summary["cleansed_rows"],)]
    assert query(home, "SELECT count(*) FROM survey_rejections") == [(summary["rejected_rows"],)]
    columns = {r[0] for r in query(home, "SELECT column_name FROM information_schema.columns")}
    assert "respondent_id" not in columns and "respondent_key" in columns
    assert sorted(
        r[0] for r in query(home, "SELECT DISTINCT cohort FROM model_estimates")
    ) == sorted(codes)
    assert query(home, "SELECT count(*) FROM model_estimates WHERE NOT (ci_low <= estimate "
                       "AND estimate <= ci_high)") == [(0,)]  # fmt: skip
    runs = query(home, "SELECT cohort, executor, exit_code, program_name FROM pipeline_runs")
    assert sorted(runs) == sorted((c, "local", 0, "estimator") for c in codes)
    assert query(home, "SELECT count(*) FROM validation_checks WHERE severity = 'error' "
                       "AND NOT passed") == [(0,)]  # fmt: skip
    assert query(home, "SELECT DISTINCT CAST(run_date AS VARCHAR) FROM model_estimates") == [
        (DATE,)
    ]


def test_status_shows_ingested_approved_published(home: Path) -> None:
    assert run_cli("run", "--run-date", DATE, "--local-scheduler").returncode == 0
    first, *others = cohort_codes(home)
    # The gate first: the program's golden cases, recorded where approve reads them.
    assert run_cli("regress", "--program", "programs/estimator/program.toml").returncode == 0
    approve = run_cli("approve", "--run-date", DATE, "--cohort", first, "--by", "alice")
    assert approve.returncode == 0, approve.stdout + approve.stderr
    status = run_cli("status", "--run-date", DATE, "--json")
    assert status.returncode == 0, status.stderr
    cohorts = {c["cohort"]: c for c in json.loads(status.stdout)["cohorts"]}
    assert cohorts[first]["publication"] == "published (alice)"
    assert cohorts[first]["approved_by"] == "alice"
    for code in others:
        assert cohorts[code]["publication"] == "ingested, not approved"
        assert cohorts[code]["approved_by"] is None


def test_rerun_replaces_and_never_duplicates(home: Path) -> None:
    assert run_cli("run", "--run-date", DATE, "--local-scheduler").returncode == 0
    before = snapshot(home)
    # Force every ingest to run again: the warehouse must come out identical.
    for marker in (home / "work" / DATE / "ingest").rglob("*.json"):
        marker.unlink()
    again = run_cli("run", "--run-date", DATE, "--local-scheduler")
    assert again.returncode == 0, again.stderr
    assert_same_tables(snapshot(home), before)


def test_one_failing_cohort_fails_only_itself(home: Path, tmp_path: Path) -> None:
    codes = cohort_codes(home)
    bad = codes[0]
    script = tmp_path / "flaky.py"
    script.write_text(
        "import os, sys\n"
        f"if sys.argv[sys.argv.index('--cohort') + 1] == {bad!r}:\n"
        "    print('Traceback: model did not converge for this cohort', file=sys.stderr)\n"
        "    sys.exit(3)\n"
        "os.execvp(sys.executable, [sys.executable, '-m', 'estimator', *sys.argv[1:]])\n"
    )
    spec = ESTIMATOR_SPEC.read_text().replace('["python", "-m", "estimator"',
                                              f'["python", "{script}"')  # fmt: skip
    assert str(script) in spec
    (tmp_path / "flaky.toml").write_text(spec)
    result = run_cli("run", "--run-date", DATE, "--local-scheduler", "--workers", "2",
                     "--program", str(tmp_path / "flaky.toml"))  # fmt: skip
    assert result.returncode == 30, result.stdout  # [retcode] task_failed
    assert f"cohorts: {len(codes) - 1} done, 1 failed" in result.stdout
    assert f"{bad}" in result.stdout and "FAILED at model" in result.stdout
    assert "exited with 3" in result.stdout
    loaded = {r[0] for r in query(home, "SELECT DISTINCT cohort FROM model_estimates")}
    assert loaded == set(codes) - {bad}
    assert {r[0] for r in query(home, "SELECT DISTINCT cohort FROM survey_responses")} >= set(codes)
    log = next((home / "work" / DATE / "logs" / "programs" / bad).glob("*.log")).read_text()
    assert "model did not converge" in log


def test_luigi_module_entry_point_is_equivalent(home: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [str(Path(sys.executable).parent / "luigi"), "--module", "pipeline.tasks", "Deliver",
         "--run-date", DATE, "--local-scheduler"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert query(home, "SELECT count(DISTINCT cohort) FROM model_estimates") == [
        (len(cohort_codes(home)),)
    ]


def test_changed_raw_files_are_refused_for_a_pinned_date(home: Path) -> None:
    assert run_cli("run", "--run-date", DATE, "--local-scheduler").returncode == 0
    response_file = next(p for p in sorted((home / "raw").rglob("*.csv"))
                         if p.name not in ("cohorts.csv", "frame.csv"))  # fmt: skip
    response_file.write_bytes(response_file.read_bytes() + b"\n")
    result = run_cli("run", "--run-date", DATE, "--local-scheduler")
    assert result.returncode == 2
    assert f"{response_file.name} changed" in result.stderr
    assert "use a new --run-date" in result.stderr
    assert "Traceback" not in result.stderr
    # A new run date takes the new files.
    assert run_cli("run", "--run-date", "2026-11-23", "--local-scheduler").returncode == 0


def test_killed_run_then_rerun_equals_a_clean_run(home: Path, tmp_path: Path) -> None:
    clean_home = tmp_path / "clean"
    clean_home.mkdir()
    (clean_home / "raw").symlink_to(home / "raw")
    env = {"PIPELINE_HOME": str(clean_home)}
    assert run_cli("run", "--run-date", DATE, "--local-scheduler", env=env).returncode == 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "run", "--run-date", DATE, "--local-scheduler",
         "--workers", "2"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    programs = home / "work" / DATE / "logs" / "programs"
    while not list(programs.rglob("*.log")) and time.monotonic() < deadline:
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)  # the CLI with its worker (not the wrappers)
    proc.wait()
    # Each orphaned wrapper notices its worker is gone and stops its program.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _wrappers_running(home):
        time.sleep(0.2)
    assert not _wrappers_running(home)
    result = run_cli("run", "--run-date", DATE, "--local-scheduler")
    assert result.returncode == 0, result.stdout + result.stderr
    assert_same_tables(snapshot(home), snapshot(clean_home))


def _wrappers_running(home: Path) -> bool:
    import psutil

    needle = str(home / "work")
    for p in psutil.process_iter(["cmdline"]):
        cmdline = p.info["cmdline"] or []
        if "pipeline.wrapper" in cmdline and any(needle in part for part in cmdline):
            return True
    return False


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--raw", "/nonexistent/raw"], "the raw directory /nonexistent/raw does not exist"),
        (["--cohort", "no-such-cohort"], "unknown cohort no-such-cohort"),
        (["--cohort", "astma"], "unknown cohort astma (did you mean asthma?)"),
        (["--program", "/nonexistent/spec.toml"], "spec.toml: program spec not found"),
        (["--warehouse", "postgres://x"], "unsupported warehouse URI"),
    ],
)
def test_bad_input_is_one_clear_line(home: Path, args: list[str], message: str) -> None:
    result = run_cli("run", "--run-date", DATE, "--local-scheduler", *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_malformed_spec_names_file_and_key(home: Path, tmp_path: Path) -> None:
    spec = tmp_path / "bad.toml"
    spec.write_text(ESTIMATOR_SPEC.read_text().replace('input_format = "parquet"',
                                                       'input_format = "xlsx"'))  # fmt: skip
    result = run_cli("run", "--run-date", DATE, "--local-scheduler", "--program", str(spec))
    assert result.returncode == 2
    assert f"{spec}: input_format" in result.stderr


def test_no_csv_files(pipeline_home: Path) -> None:
    (pipeline_home / "raw").mkdir()
    result = run_cli("run", "--run-date", DATE, "--local-scheduler")
    assert result.returncode == 2
    assert "raw" in result.stderr and "Traceback" not in result.stderr
