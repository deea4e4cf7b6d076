"""`pipeline status` on a finished run with one failed cohort, without luigid."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.ops.conftest import DATE, Run, free_port, home_env


def test_table_shows_each_cohort_and_step(failed_run: Run) -> None:
    result = failed_run.cli("status", "--run-date", DATE, "--program", str(failed_run.spec))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    header = next(line for line in lines if line.startswith("cohort"))
    assert header.split() == [
        "cohort", "cleanse", "quality", "model", "validate", "ingest", "executor", "cost",
        "publication",
    ]  # fmt: skip
    bad, *good = failed_run.codes
    table = lines[lines.index(header) + 1 :]
    table = table[: table.index("")]
    row = {line.split()[0]: line.split() for line in table}
    assert sorted(row) == sorted(failed_run.codes)
    assert row[bad][1] == "done" and row[bad][3] == "done" and row[bad][5] == "failed"
    # the failed program's compute counts (local prices are 0 in luigi.cfg)
    assert row[bad][7:] == ["pending", "pending", "local", "$0.00", "-"]
    for code in good:
        assert [row[code][i] for i in (1, 3, 5, 7, 9)] == ["done"] * 5, row[code]
        assert row[code][11:] == ["local", "$0.00", "ingested,", "not", "approved"]
    # The failure: its error line and where its log is.
    block = result.stdout.split(f"{bad} model FAILED: ", 1)[1].splitlines()
    assert "exited with 3" in block[0]
    log = block[1].strip().removeprefix("log: ")
    assert Path(log).is_file() and "did not converge" in Path(log).read_text()
    assert "cohorts: 2 done, 1 failed" in result.stdout


def test_json_for_machines(failed_run: Run) -> None:
    result = failed_run.cli("status", "--run-date", DATE, "--program", str(failed_run.spec),
                            "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["run_date"] == DATE
    assert data["survey_ingest"]["state"] == "done"
    cohorts = {c["cohort"]: c for c in data["cohorts"]}
    assert sorted(cohorts) == sorted(failed_run.codes)
    bad, *good = failed_run.codes
    model = cohorts[bad]["steps"]["model"]
    assert cohorts[bad]["state"] == "failed"
    assert model["state"] == "failed" and "exited with 3" in model["error"]
    assert model["executor"] == "local" and model["seconds"] > 0
    assert cohorts[bad]["steps"]["validate"]["state"] == "pending"
    for code in good:
        steps = cohorts[code]["steps"]
        assert {s["state"] for s in steps.values()} == {"done"}
        assert all(s["seconds"] is not None for s in steps.values()), steps
        assert steps["model"]["started_at"] <= steps["model"]["finished_at"]


def test_unreachable_scheduler_falls_back_to_targets(failed_run: Run) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = failed_run.cli("status", "--run-date", DATE, "--program", str(failed_run.spec),
                            "--scheduler-url", url)  # fmt: skip
    assert result.returncode == 0
    assert f"luigid at {url} not reachable" in result.stderr
    assert "cohorts: 2 done, 1 failed" in result.stdout


def test_records_gone_since_they_were_looked_at_are_not_an_error(
    failed_run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A status sees one moment of a run that goes on: a retry that succeeds removes its
    failure record, a rerun the program's run records, between the listing (or the
    existence check) and the read. The status then shows what is left, and does not
    stop with a traceback."""
    import datetime as dt

    from pipeline import storage
    from pipeline.status import collect

    for key, value in home_env(failed_run.home).items():
        monkeypatch.setenv(key, value)
    read_bytes, read_json = storage.read_bytes, storage.read_json

    def gone(read, removed: str):
        def reading(uri: str):
            if removed in uri:
                raise FileNotFoundError(f"no such file: {uri}")
            return read(uri)

        return reading

    monkeypatch.setattr(storage, "read_bytes", gone(read_bytes, "/logs/failures/"))
    monkeypatch.setattr(storage, "read_json", gone(read_json, "run.json"))
    status = collect(dt.date.fromisoformat(DATE), programs=[str(failed_run.spec)])
    bad, *good = failed_run.codes
    rows = {row.cohort: row for row in status.cohorts}
    assert rows[bad].steps["model"].state == "pending"  # its failure record is gone
    assert rows[bad].steps["model"].error is None
    assert rows[bad].extra["manifest"] is None  # and its run records
    for code in good:
        assert rows[code].state == "done"


def test_a_status_of_one_cohort_reads_that_cohorts_timing_records_only(
    failed_run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A one-cohort run's summary (``pipeline rerun --cohort``) is the status of that
    cohort: it reads the records of its own tasks and the date's, not every cohort's.
    Without programs named, the date's RunModel records say which programs ran."""
    import datetime as dt

    from pipeline import storage
    from pipeline.status import collect

    for key, value in home_env(failed_run.home).items():
        monkeypatch.setenv(key, value)
    read_json, read = storage.read_json, []

    def spied(uri: str):
        read.append(uri)
        return read_json(uri)

    monkeypatch.setattr(storage, "read_json", spied)
    date = dt.date.fromisoformat(DATE)
    bad, good, *_ = failed_run.codes
    status = collect(date, cohorts=[good], programs=[str(failed_run.spec)])
    (row,) = status.cohorts
    assert row.cohort == good and row.state == "done"
    assert all(s.seconds is not None for s in row.steps.values()), row.steps
    timings = {Path(uri).name.split("_")[0] for uri in read if "/logs/tasks/" in uri}
    assert timings == {"CleanseSurvey", "IngestSurvey", "CheckData", "RunModel",
                       "ValidateResults", "IngestResults"}  # fmt: skip
    records = [Path(uri).name for uri in read if "/logs/tasks/" in uri]
    assert len(records) == 6 and not [r for r in records if bad.replace("-", "_") in r]

    read.clear()
    status = collect(date)  # every cohort, the programs from the records
    assert sorted(row.cohort for row in status.cohorts) == sorted(failed_run.codes)
    records = [uri for uri in read if "/logs/tasks/" in uri]
    assert len(records) == len(set(records))  # each record once
