"""`pipeline rerun` on a completed run: only the chosen cohort's step and what follows it
change, on disk and in the warehouse; raw data and other cohorts are untouched."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from tests.ops.conftest import DATE, Run, cohort_codes, make_home, noop_spec, pipeline


@pytest.fixture(scope="module")
def completed(tmp_path_factory: pytest.TempPathFactory) -> Run:
    home = make_home(tmp_path_factory.mktemp("rerun"), seed=11)
    spec = noop_spec(home / "noop.toml")
    result = pipeline(home, "run", "--run-date", DATE, "--local-scheduler", "--workers", "3",
                      "--program", str(spec))  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return Run(home, spec, cohort_codes(home), result)


def mtimes(root: Path) -> dict[str, int]:
    """Modification times of the targets under ``root`` (not logs, not the run lock)."""
    return {
        str(p.relative_to(root)): p.stat().st_mtime_ns
        for p in root.rglob("*")
        if p.is_file() and not str(p.relative_to(root)).startswith(("logs/", ".run.lock"))
    }


def listed(stdout: str) -> list[str]:
    """The outputs `pipeline rerun` says it invalidates."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if "invalidates" in line) + 1
    end = next(i for i, line in enumerate(lines) if line.startswith("  (under "))
    return [line.strip() for line in lines[start:end]]


def rows(home: Path, table: str, where: str) -> list[tuple]:
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        # As text: timestamps with time zone would need pytz to come back as Python values.
        sql = f"SELECT COLUMNS(*)::VARCHAR FROM {table} WHERE {where} ORDER BY ALL"
        return con.execute(sql).fetchall()


def test_rerun_from_model_touches_only_that_cohort(completed: Run) -> None:
    home, target, *others = completed.home, *completed.codes
    work = home / "work" / DATE
    before = mtimes(work)  # targets only: logs under work/DATE/logs change with every run
    raw_before = mtimes(home / "raw")
    kept = f"cohort <> '{target}'"
    tables = ("model_estimates", "validation_checks", "pipeline_runs", "survey_responses")
    warehouse_before = {t: rows(home, t, kept) for t in tables}
    estimates_before = rows(home, "model_estimates", f"cohort = '{target}'")

    result = completed.cli("rerun", "--run-date", DATE, "--cohort", target, "--from", "model",
                           "--yes", "--program", str(completed.spec),
                           "--local-scheduler")  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    slug = next((work / "model" / target).iterdir()).name
    assert sorted(listed(result.stdout)) == sorted(
        [f"model/{target}/{slug}/results.parquet", f"model/{target}/{slug}/run.json",
         f"validate/{target}/{slug}/checks.parquet",
         *(f"ingest/{target}/{slug}/{p.name}" for p in (work / "ingest" / target / slug).iterdir())]
    )  # fmt: skip

    after = mtimes(work)
    changed = {path for path in before if after.get(path) != before[path]}
    # The earlier attempt is recorded as superseded (abandoned): rerun means run again.
    (superseded,) = [p for p in before if p.startswith(f"model/{target}/{slug}/attempts/")
                     and p.endswith("/run.json")]  # fmt: skip
    assert changed == {
        f"model/{target}/{slug}/results.parquet",
        f"model/{target}/{slug}/run.json",
        f"validate/{target}/{slug}/checks.parquet",
        superseded,
        *(p for p in before if p.startswith(f"ingest/{target}/")),
    }
    new = set(after) - set(before)
    assert new and all(p.startswith(f"model/{target}/{slug}/attempts/") for p in new)
    assert mtimes(home / "raw") == raw_before
    for code in others:
        assert len(list((work / "model" / code / slug / "attempts").iterdir())) == 1
    assert len(list((work / "model" / target / slug / "attempts").iterdir())) == 2

    assert {t: rows(home, t, kept) for t in tables} == warehouse_before
    assert rows(home, "model_estimates", f"cohort = '{target}'") == estimates_before
    runs = rows(home, "pipeline_runs", f"cohort = '{target}'")
    assert len(runs) == 2  # both attempts: the new one succeeded, the superseded one not
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        statuses = con.execute(
            f"SELECT status, error FROM pipeline_runs WHERE cohort = '{target}' ORDER BY 1"
        ).fetchall()
    assert (
        statuses[0][0] == "abandoned"
        and "superseded: pipeline rerun --from model" in statuses[0][1]
    )
    assert statuses[1] == ("succeeded", "")


def test_from_validate_lists_checks_and_ingest_only(completed: Run) -> None:
    target = completed.codes[1]
    result = completed.cli("rerun", "--run-date", DATE, "--cohort", target, "--from", "validate",
                           "--dry-run", "--program", str(completed.spec))  # fmt: skip
    assert result.returncode == 0, result.stderr
    paths = listed(result.stdout)
    assert paths and all(p.startswith((f"validate/{target}/", f"ingest/{target}/"))
                         for p in paths)  # fmt: skip
    assert any(p.endswith("checks.parquet") for p in paths)


def test_confirmation_is_required_without_a_terminal(completed: Run) -> None:
    work = completed.home / "work" / DATE
    before = mtimes(work)
    result = completed.cli("rerun", "--run-date", DATE, "--cohort", completed.codes[0],
                           "--from", "ingest", "--program", str(completed.spec),
                           "--local-scheduler")  # fmt: skip
    assert result.returncode == 2
    assert "pass --yes" in result.stderr and "Traceback" not in result.stderr
    assert mtimes(work) == before


def test_no_luigid_is_refused_before_anything_is_removed(completed: Run) -> None:
    work = completed.home / "work" / DATE
    before = mtimes(work)
    result = completed.cli("rerun", "--run-date", DATE, "--cohort", completed.codes[0],
                           "--from", "validate", "--yes", "--program", str(completed.spec),
                           "--scheduler-url", "http://127.0.0.1:9")  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    assert "no luigid answers at http://127.0.0.1:9" in result.stderr
    assert "Traceback" not in result.stderr
    assert mtimes(work) == before


def test_from_cleanse_is_the_whole_date(completed: Run) -> None:
    result = completed.cli("rerun", "--run-date", DATE, "--cohort", completed.codes[0],
                           "--from", "cleanse", "--yes")  # fmt: skip
    assert result.returncode == 2
    assert "drop --cohort" in result.stderr

    work = completed.home / "work" / DATE
    before = mtimes(work)
    result = completed.cli("rerun", "--run-date", DATE, "--from", "cleanse", "--dry-run",
                           "--program", str(completed.spec))  # fmt: skip
    assert result.returncode == 0, result.stderr
    paths = listed(result.stdout)
    assert "cleanse/inputs.json" in paths  # the pin: new raw files are taken on purpose
    assert paths.index("cleanse/summary.json") < paths.index("cleanse/inputs.json")
    assert paths[0].startswith("ingest/") and paths[-1].startswith("cleanse/")
    assert not any("/attempts/" in p for p in paths)
    for code in completed.codes:
        assert any(p.startswith(f"model/{code}/") for p in paths)
    assert mtimes(work) == before  # a dry run removes nothing


def test_from_model_needs_a_cohort(completed: Run) -> None:
    result = completed.cli("rerun", "--run-date", DATE, "--from", "model", "--yes")
    assert result.returncode == 2 and "needs --cohort" in result.stderr
