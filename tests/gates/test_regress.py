"""`pipeline regress` as a user runs it: the estimator's shipped golden case passes; a
case out of tolerance prints the diff table, exits 1, and `pipeline approve` then refuses
that program build until a person accepts it with a reason."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
from pathlib import Path

import pandas as pd

from pipeline.core.spec import load_spec
from pipeline.warehouse import open_warehouse
from tests.conftest import ESTIMATOR_SPEC, REPO
from tests.ops.conftest import home_env, noop_spec, pipeline
from tests.warehouse.helpers import results, survey

D1 = dt.date(2026, 11, 22)


def test_estimator_golden_case_passes(tmp_path: Path) -> None:
    result = pipeline(tmp_path, "regress", "--program", str(ESTIMATOR_SPEC))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok: 45 of 45 values within tolerance" in result.stdout
    spec = load_spec(ESTIMATOR_SPEC)
    recorded = json.loads((tmp_path / "work" / "regress" / spec.slug / "result.json").read_text())
    assert recorded["passed"] and recorded["program_fingerprint"] == spec.fingerprint
    assert [c["name"] for c in recorded["cases"]] == ["small"]
    # It ran through the wrapper, like a cohort of a delivery.
    case = tmp_path / "work" / "regress" / spec.slug / "cases" / "small"
    assert list(case.glob("*/model/diabetes/*/attempts/*/out/manifest.json"))


def test_the_shipped_variant_passes_its_own_golden_case(tmp_path: Path) -> None:
    """The example variant (docs/variants.md) can be approved the normal way: its golden
    case reads the base's input and frame, and expects the results of its own params."""
    variant = REPO / "programs" / "variants" / "bootstrap-400.toml"
    result = pipeline(tmp_path, "regress", "--program", str(variant))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok: 45 of 45 values within tolerance" in result.stdout
    spec, base = load_spec(variant), load_spec(ESTIMATOR_SPEC)
    assert [(c.input, c.frame) for c in spec.golden] == [(c.input, c.frame) for c in base.golden]
    assert spec.golden[0].expected != base.golden[0].expected  # its own numbers
    recorded = json.loads((tmp_path / "work" / "regress" / spec.slug / "result.json").read_text())
    assert recorded["passed"] and recorded["program_fingerprint"] == spec.fingerprint


def test_make_regress_records_every_shipped_spec_and_variant(tmp_path: Path) -> None:
    """What Jenkins' Regress stage runs (`make regress`, its default PROGRAMS) records a
    passing result for the champion and for every variant under programs/variants/, so
    either can be approved."""
    assert subprocess.run(["make", "-q", "install"], cwd=REPO).returncode == 0, "venv stale"
    root = tmp_path / "root"
    result = subprocess.run(
        ["make", "--no-print-directory", "regress", f"REGRESS_ROOT={root}"], cwd=REPO,
        env={**os.environ, **home_env(tmp_path / "home")}, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    specs = [ESTIMATOR_SPEC, *sorted((REPO / "programs" / "variants").glob("*.toml"))]
    for path in specs:
        record = json.loads((root / "regress" / load_spec(path).slug / "result.json").read_text())
        assert record["passed"], (path, record)


def golden_noop(home: Path, expected_y: float) -> Path:
    """The no-op program (x: 50, y: 55) with a golden case expecting ``expected_y``."""
    spec = noop_spec(home / "noop.toml")
    case = home / "golden"
    case.mkdir(parents=True)
    pd.DataFrame({"cohort": ["c1"], "share_x": [40.0], "share_y": [60.0]}).to_parquet(
        case / "input.parquet"
    )
    (case / "frame.csv").write_text("specialty,region,facility_type,n_physicians\na,b,c,1\n")
    (case / "expected.csv").write_text(
        f"treatment,estimate,ci_low,ci_high\nx,50,40,60\ny,{expected_y},45,65\n"
    )
    spec.write_text(
        spec.read_text()
        + '[[golden]]\nname = "tiny"\ncohort = "c1"\ninput = "golden/input.parquet"\n'
        'frame = "golden/frame.csv"\nexpected = "golden/expected.csv"\n'
        "[golden.tolerance]\nestimate = { abs = 1.0 }\n"
    )
    return spec


def test_out_of_tolerance_prints_the_diff_and_blocks_approval(tmp_path: Path) -> None:
    spec_path = golden_noop(tmp_path, expected_y=58.0)
    result = pipeline(tmp_path, "regress", "--program", str(spec_path))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAIL: 5 of 6 values within tolerance" in result.stdout
    table = result.stdout.splitlines()
    header = next(i for i, line in enumerate(table) if line.startswith("TREATMENT"))
    assert table[header].split() == [
        "TREATMENT", "COLUMN", "EXPECTED", "ACTUAL", "DIFF", "TOLERANCE", "RESULT",
    ]  # fmt: skip
    assert table[header + 1].split() == ["y", "estimate", "58", "55", "-3", "abs", "1", "FAIL"]
    assert "0 of 1 golden case(s) passed" in result.stdout

    # That build's results are ingested for cohort a; approval needs an accepted reason.
    spec = load_spec(spec_path)
    uri = f"duckdb://{tmp_path / 'warehouse.duckdb'}"
    warehouse = open_warehouse(uri)
    warehouse.replace(D1, None, survey({"a": 3}))
    data = results([10.0, 20.0])
    data["pipeline_runs"] = data["pipeline_runs"].assign(
        program_name=spec.name, program_version=spec.version,
        program_fingerprint=spec.fingerprint, status="succeeded",
    )  # fmt: skip
    warehouse.replace(D1, "a", data)
    args = ("approve", "--run-date", str(D1), "--by", "Jane", "--warehouse", uri)
    refused = pipeline(tmp_path, *args)
    assert refused.returncode == 1
    assert "failed golden case(s) tiny" in refused.stderr
    assert "--accept-regression" in refused.stderr
    assert warehouse.publication_status(D1)["approved_by"].isna().all()
    reason = "y moved on purpose: new imputation agreed with the client"
    accepted = pipeline(tmp_path, *args, "--accept-regression", reason)
    assert accepted.returncode == 0, accepted.stderr
    assert f"accepted: {reason}" in accepted.stdout
    approvals = warehouse.query("SELECT approved_by, accepted_regression FROM published.approvals")
    assert approvals.values.tolist() == [["Jane", reason]]


def test_passing_case_and_usage_errors(tmp_path: Path) -> None:
    spec_path = golden_noop(tmp_path, expected_y=55.4)
    ok = pipeline(tmp_path, "regress", "--program", str(spec_path), "--all-rows")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    rows = [line.split() for line in ok.stdout.splitlines()]
    assert ["y", "estimate", "55.4", "55", "-0.4", "abs", "1", "ok"] in rows
    missing = pipeline(tmp_path, "regress", "--program", str(spec_path), "--case", "nope")
    assert missing.returncode == 2 and "no golden case named nope" in missing.stderr
