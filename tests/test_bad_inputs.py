"""A corpus of bad inputs and misconfigurations, each run through the real `pipeline`
command on a copy of a home that already holds one delivery: the exit code is the
documented one, the culprit is named, no traceback reaches the console, nothing of the
failed part lands in the warehouse and the earlier delivery is untouched."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pytest

from tests.conftest import ESTIMATOR_SPEC
from tests.ops.conftest import cohort_codes, make_home, noop_spec, pipeline

EARLIER, DATE = "2026-11-20", "2026-11-22"
# No credentials anywhere, and never ask the instance metadata service (no traffic leaves).
NO_AWS = {"AWS_SHARED_CREDENTIALS_FILE": "/nonexistent", "AWS_CONFIG_FILE": "/nonexistent",
          "AWS_EC2_METADATA_DISABLED": "true", "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "",
          "AWS_SESSION_TOKEN": "", "AWS_PROFILE": ""}  # fmt: skip
TABLES = ("survey_responses", "survey_rejections", "model_estimates", "validation_checks",
          "pipeline_runs")  # fmt: skip


@dataclass
class Case:
    """What to break (``setup`` edits the home, returns extra CLI args and environment)."""

    name: str
    setup: Callable[[Path], tuple[list[str], dict[str, str]]]
    code: int
    says: tuple[str, ...]
    command: str = "run"
    # Cohorts whose estimates must not be in the warehouse for DATE ("*": nothing of DATE).
    absent: str = "*"
    extra: dict[str, str] = field(default_factory=dict)


def _response(home: Path) -> Path:
    return sorted((home / "raw" / "responses").glob("*.csv"))[0]


def _replace_response(data: bytes) -> Callable[[Path], tuple[list[str], dict[str, str]]]:
    def setup(home: Path) -> tuple[list[str], dict[str, str]]:
        _response(home).write_bytes(data)
        return [], {}

    return setup


def _edit_response(edit: Callable[[list[str]], list[str]]):
    def setup(home: Path) -> tuple[list[str], dict[str, str]]:
        path = _response(home)
        raw = path.read_bytes()
        text = raw.decode("utf-8-sig") if not raw.startswith(b"\x82") else raw.decode("cp932")
        try:
            raw.decode("utf-8")
            encoding = "utf-8"
        except UnicodeDecodeError:
            encoding = "cp932"
        lines = text.splitlines()
        path.write_bytes("\n".join(edit(lines)).encode(encoding) + b"\n")
        return [], {}

    return setup


def _config(text: str, *args: str):
    def setup(home: Path) -> tuple[list[str], dict[str, str]]:
        path = home / "override.cfg"
        path.write_text(text)
        return list(args), {"LUIGI_CONFIG_PATH": str(path)}

    return setup


def _args(*args: str):
    return lambda home: (list(args), {})


def _spec(transform: Callable[[str], str], *, base: str = "noop"):
    def setup(home: Path) -> tuple[list[str], dict[str, str]]:
        source = (home / "noop.toml") if base == "noop" else ESTIMATOR_SPEC
        spec = home / "case.toml"
        spec.write_text(transform(source.read_text()))
        return ["--program", str(spec)], {}

    return setup


def _drop_column(name: str):
    def edit(lines: list[str]) -> list[str]:
        header = lines[0].split(",")
        index = header.index(name)
        return [",".join(v for i, v in enumerate(line.split(",")) if i != index) for line in lines]

    return _edit_response(edit)


def _remove(relative: str):
    def setup(home: Path) -> tuple[list[str], dict[str, str]]:
        (home / "raw" / relative).unlink()
        return [], {}

    return setup


def _write(relative: str, data: bytes):
    def setup(home: Path) -> tuple[list[str], dict[str, str]]:
        (home / "raw" / relative).write_bytes(data)
        return [], {}

    return setup


def _pinned_then_changed(home: Path) -> tuple[list[str], dict[str, str]]:
    path = _response(home)
    path.write_bytes(path.read_bytes() + path.read_bytes().splitlines(keepends=True)[-1])
    return ["--run-date", EARLIER], {}


CASES = [
    Case("empty response file", _replace_response(b""), 30, ("wave1.csv", "empty")),
    Case(
        "undecodable bytes",
        _replace_response(b"response_id,disease\n\xff\xfe\x00\x81\x00\n"),
        30,
        ("wave1.csv", "row 2"),
    ),
    Case(
        "xlsx saved as csv",
        _replace_response(b"PK\x03\x04\x14\x00\x06\x00" + bytes(range(256))),
        30,
        ("wave1.csv",),
    ),
    Case("missing required column", _drop_column("disease"), 30, ("wave1.csv", "disease")),
    Case(
        "duplicate header column",
        _edit_response(lambda ls: [ls[0] + ",disease", *(line + ",x" for line in ls[1:])]),
        30,
        ("wave1.csv", "disease"),
    ),
    Case(
        "ragged row",
        _edit_response(lambda ls: [*ls[:3], ls[3] + ",1,2,3", *ls[4:]]),
        30,
        ("wave1.csv", "row 4"),
    ),
    Case("header only", _edit_response(lambda ls: ls[:1]), 0, (), absent=""),
    Case("no cohorts.csv", _remove("cohorts.csv"), 2, ("cohorts.csv",)),
    Case("no frame.csv", _remove("frame.csv"), 30, ("frame.csv",)),
    Case(
        "bad cohort code",
        _write("cohorts.csv", "code,label\r\nBad Code!,x\r\n".encode("cp932")),
        2,
        ("cohorts.csv, row 2, column 'code'", "bad code!"),
    ),
    Case("raw directory missing", _args("--raw", "/nonexistent/raw"), 2, ("/nonexistent/raw",)),
    Case("unknown cohort", _args("--cohort", "no-such-cohort"), 2, ("no-such-cohort",)),
    Case("cohort typo", _args("--cohort", "diabets"), 2, ("diabets", "did you mean diabetes")),
    Case(
        "spec not found",
        _args("--program", "/nonexistent/spec.toml"),
        2,
        ("/nonexistent/spec.toml", "not found"),
    ),
    Case("spec not TOML", _spec(lambda t: t + "\n[[[\n"), 2, ("case.toml", "not valid TOML")),
    Case("spec unknown key", _spec(lambda t: "colour = 'red'\n" + t), 2, ("case.toml", "colour")),
    Case(
        "spec unknown placeholder",
        _spec(lambda t: t.replace("{output_dir}", "{outdir}")),
        2,
        ("case.toml", "{outdir}"),
    ),
    Case(
        "spec bad timeout",
        _spec(lambda t: t.replace('timeout = "5m"', 'timeout = "soon"')),
        2,
        ("case.toml", "timeout"),
    ),
    Case(
        "program not found",
        _spec(lambda t: t.replace('"python"', '"/nonexistent/program"')),
        30,
        ("exited with 127", "/nonexistent/program"),
        absent="*",
    ),
    Case(
        "program writes no results",
        _spec(lambda t: t.replace('results = "estimates.csv"', 'results = "missing.csv"')),
        30,
        ("wrote no missing.csv",),
        absent="*",
    ),
    Case(
        "program fails for one cohort",
        lambda home: (
            ["--program", str(noop_spec(home / "fail.toml", fail_cohort="diabetes"))],
            {},
        ),
        30,
        ("diabetes", "exited with 3", "model did not converge"),
        absent="diabetes",
    ),
    Case(
        "program times out",
        _spec(lambda t: t.replace('"0.0"', '"30"').replace('timeout = "5m"', 'timeout = "1s"')),
        30,
        ("exited with 124",),
        absent="*",
    ),
    Case(
        "unsupported warehouse",
        _args("--warehouse", "postgres://x"),
        2,
        ("postgres://x", "unsupported warehouse URI"),
    ),
    Case("warehouse without a path", _args("--warehouse", "duckdb://"), 2, ("duckdb://",)),
    Case("workers zero", _args("--workers", "0"), 2, ("--workers",)),
    Case("bad run date", _args("--run-date", "2026-13-01"), 2, ("2026-13-01",)),
    Case(
        "cloud executor with local storage",
        _args("--executor", "ecs"),
        2,
        ("ecs executor needs [storage] root = s3://",),
    ),
    Case(
        "unknown executor in config",
        _config("[pipeline]\nexecutor = kubernetes\n"),
        2,
        ("kubernetes", "local, ecs, batch"),
    ),
    Case(
        "bad ecs launch type",
        _config("[ecs]\nlaunch_type = SPOT\n[storage]\nroot = s3://b/p\n", "--executor", "ecs"),
        2,
        ("launch_type", "SPOT"),
    ),
    Case(
        "no luigid",
        _args("--scheduler-url", "http://127.0.0.1:9"),
        2,
        ("no luigid answers at http://127.0.0.1:9",),
    ),
    Case(
        "raw files changed for a pinned date",
        _pinned_then_changed,
        2,
        ("differ from the ones run date", "pipeline rerun"),
        absent="",
    ),
    Case("status of a date never run", _args(), 2, ("no run for 2026-11-22",), command="status"),
    Case(
        "rerun from model without a cohort",
        _args("--from", "model"),
        2,
        ("needs --cohort",),
        command="rerun",
    ),
    Case(
        "approve a cohort typo",
        _args("--cohort", "diabets", "--by", "qa", "--run-date", EARLIER),
        2,
        ("unknown cohort diabets", "did you mean diabetes"),
        command="approve",
        absent="",
    ),
    Case("report of a date never run", _args(), 2, ("no run for 2026-11-22",), command="report"),
]


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home with two cohorts and one finished delivery (EARLIER) in DuckDB."""
    home = make_home(tmp_path_factory.mktemp("baseline") / "home", cohorts=2, respondents=80)
    spec = noop_spec(home / "noop.toml")
    result = pipeline(home, "run", "--run-date", EARLIER, "--local-scheduler", "--program",
                      str(spec))  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return home


def _counts(home: Path, date: str) -> dict[str, int]:
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        return {
            table: con.execute(
                f"SELECT count(*) FROM {table} WHERE run_date = DATE '{date}'"
            ).fetchone()[0]
            for table in TABLES
        }


def _estimate_cohorts(home: Path, date: str) -> set[str]:
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        rows = con.execute(
            f"SELECT DISTINCT cohort FROM model_estimates WHERE run_date = DATE '{date}'"
        ).fetchall()
    return {cohort for (cohort,) in rows}


def test_the_corpus_is_large_enough() -> None:
    assert len(CASES) >= 30
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(case: Case, baseline: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    shutil.copytree(baseline, home, symlinks=True)
    (home / "work" / EARLIER / ".run.lock").unlink(missing_ok=True)
    earlier = _counts(home, EARLIER)
    args, env = case.setup(home)
    command = [case.command]
    if "--run-date" not in args:
        command += ["--run-date", DATE]
    if (
        case.command in ("run", "rerun")
        and "--program" not in args
        and "--scheduler-url" not in args
    ):
        args += ["--program", str(home / "noop.toml")]
    if case.command in ("run", "rerun") and "--scheduler-url" not in args:
        args.append("--local-scheduler")
    result = pipeline(home, *command, *args, **env, **case.extra)
    output = result.stdout + result.stderr
    assert result.returncode == case.code, output
    for text in case.says:
        assert text in output, (text, output)
    assert "Traceback" not in output, output
    if case.command == "run" and result.returncode == 2 and not result.stderr.startswith("usage:"):
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    if (home / "warehouse.duckdb").exists():
        assert _counts(home, EARLIER) == earlier  # the earlier delivery is untouched
        if case.absent == "*" and "--run-date" not in args:
            counts = _counts(home, DATE)
            assert counts["model_estimates"] == 0, counts
            if case.code == 2:
                assert counts == dict.fromkeys(TABLES, 0), counts
        elif case.absent:
            assert case.absent not in _estimate_cohorts(home, DATE)
    if result.returncode == 30:
        # luigi's full log, tracebacks included, is in the run's log file.
        logs = list((home / "work" / DATE / "logs" / "runs").glob("*.log"))
        assert logs and "DEBUG" in logs[0].read_text()
        assert any(cohort in output or "cleans" in output for cohort in cohort_codes(home))
