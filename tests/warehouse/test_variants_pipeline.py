"""Program variants through the whole pipeline, as a user runs it (`pipeline run` in a
separate process with the real example estimator), on DuckDB and on BigQuery (the real
client against the local fake): spec A, then variant B, then A again for one date keep
both variants' rows; an ingest marker is believed only while the warehouse holds its rows;
the run manifest reaches pipeline_runs with checksums recomputed here from the files."""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.metadata
import json
import os
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest

import pipeline
from pipeline.core.rawdata import read_cohorts
from pipeline.tasks import IngestResults
from pipeline.tasks.ingest import forget_loaded
from pipeline.tasks.params import canonical_program, load_program
from pipeline.warehouse import open_warehouse
from tests.conftest import ESTIMATOR_SPEC, run_cli
from tests.warehouse.bqfake import FakeBigQuery
from tests.warehouse.helpers import BQ_URI, DATASET, PROJECT

DATE = "2026-11-22"
D = dt.date.fromisoformat(DATE)


@dataclass
class Setup:
    home: Path
    uri: str
    fake: FakeBigQuery | None
    spec_a: str  # a program with param overrides (--param)
    spec_b: str  # a variant TOML that extends the estimator's spec

    def run(self, *args: str):
        result = run_cli("run", "--run-date", DATE, "--local-scheduler", "--warehouse",
                         self.uri, *args)  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        return result

    def rows(self, sql: str, **params) -> list[tuple]:
        frame = open_warehouse(self.uri).query(sql, {"run_date": D, **params})
        return [tuple(row) for row in frame.itertuples(index=False)]

    def delete(self, table: str, where: str) -> None:
        """Remove rows behind the pipeline's back (a DBA, a botched migration)."""
        if self.fake is None:
            with duckdb.connect(self.uri.removeprefix("duckdb://")) as con:
                con.execute(f"DELETE FROM {table} WHERE {where}")
        else:
            self.fake.db.execute(f'DELETE FROM "{PROJECT}"."{DATASET}"."{table}" WHERE {where}')


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(params=["duckdb", "bigquery"])
def setup(request: pytest.FixtureRequest, pipeline_home: Path, tmp_path: Path) -> Setup:
    made = run_cli("sample-data", "--out", str(pipeline_home / "raw"), "--cohorts", "2",
                   "--respondents", "300", "--seed", "11")  # fmt: skip
    assert made.returncode == 0, made.stderr
    variant = tmp_path / "variants" / "bootstrap30.toml"
    variant.parent.mkdir()
    base = os.path.relpath(ESTIMATOR_SPEC, variant.parent)  # relative to the variant file
    variant.write_text(f'extends = "{base}"\n[params]\nbootstrap = 30\n')
    fake = None
    if request.param == "duckdb":
        uri = f"duckdb://{pipeline_home / 'warehouse.duckdb'}"
    else:
        fake = request.getfixturevalue("bq")
        uri = BQ_URI
    forget_loaded()
    return Setup(pipeline_home, uri, fake, f"{ESTIMATOR_SPEC}?bootstrap=20", str(variant))


def test_a_then_b_then_a_keeps_both_variants_and_markers_honest(setup: Setup) -> None:
    a = load_program(canonical_program(setup.spec_a))
    b = load_program(canonical_program(setup.spec_b))
    assert a.params["bootstrap"] == 20 and b.params["bootstrap"] == 30
    assert a.command == b.command and a.fingerprint != b.fingerprint
    codes = list(read_cohorts(setup.home / "raw")["code"])

    setup.run("--program", str(ESTIMATOR_SPEC), "--param", "bootstrap=20")  # A
    first_a = setup.rows(
        "SELECT cohort, treatment, estimate FROM model_estimates WHERE variant = @v "
        "ORDER BY 1, 2", v=a.slug,
    )  # fmt: skip
    setup.run("--program", setup.spec_b)  # B
    setup.run("--program", str(ESTIMATOR_SPEC), "--param", "bootstrap=20")  # A again
    for table in ("model_estimates", "validation_checks", "pipeline_runs"):
        got = setup.rows(
            f"SELECT variant, program_fingerprint, COUNT(DISTINCT cohort) FROM {table} "
            "WHERE run_date = @run_date GROUP BY 1, 2 ORDER BY 1"
        )
        assert got == sorted([(a.slug, a.fingerprint, 2), (b.slug, b.fingerprint, 2)]), table
    # A again found everything done: A's rows are the ones of its first run.
    assert setup.rows(
        "SELECT cohort, treatment, estimate FROM model_estimates WHERE variant = @v "
        "ORDER BY 1, 2", v=a.slug,
    ) == first_a  # fmt: skip
    assert setup.rows("SELECT COUNT(*) FROM pipeline_runs WHERE variant = @v", v=a.slug) == [
        (2,)
    ]  # one attempt per cohort: nothing ran twice
    # The two variants' bootstrap intervals differ, their point estimates do not.
    compared = run_cli("compare", "--run-date", DATE, "--warehouse", setup.uri, "--program",
                       setup.spec_a, "--program", setup.spec_b, "--json")  # fmt: skip
    assert compared.returncode == 0, compared.stderr
    result = json.loads(compared.stdout)
    assert result["variants"] == [a.slug, b.slug]
    assert {(r["cohort"], r["treatment"]) for r in result["rows"]} == {
        (c, t) for c, t, _ in first_a
    }
    for row in result["rows"]:
        assert row["difference"] == pytest.approx(0.0, abs=1e-9) and row["overlap"] is True
        assert row["ci"] != row["baseline_ci"]
    assert [c["runs"] for c in result["costs"]] == [2, 2]
    assert all(c["run_seconds"] > 0 for c in result["costs"])
    table = run_cli("compare", "--run-date", DATE, "--warehouse", setup.uri, "--program",
                    setup.spec_a, "--program", setup.spec_b)  # fmt: skip
    assert f"{b.slug} vs {a.slug}" in table.stdout and "cost and run time" in table.stdout

    # Rows deleted behind A's marker of one cohort: that task is not done any more.
    gone, kept = codes
    task = IngestResults(run_date=D, cohort=gone, program=setup.spec_a, warehouse=setup.uri)
    other = IngestResults(run_date=D, cohort=kept, program=setup.spec_a, warehouse=setup.uri)
    assert task.complete() and other.complete()
    setup.delete("model_estimates", f"cohort = '{gone}' AND variant = '{a.slug}'")
    forget_loaded()
    assert not task.complete() and other.complete()
    setup.run("--program", setup.spec_a)  # A's overrides in the program value itself
    forget_loaded()
    assert task.complete()
    assert setup.rows(
        "SELECT cohort, treatment, estimate FROM model_estimates WHERE variant = @v "
        "ORDER BY 1, 2", v=a.slug,
    ) == first_a  # fmt: skip

    # Publishing: exactly the named variant per cohort.
    approve = run_cli("approve", "--run-date", DATE, "--by", "Jane", "--warehouse",
                      setup.uri, "--program", setup.spec_b, "--accept-regression",
                      "B is a test variant: no golden-case record")  # fmt: skip
    assert approve.returncode == 0, approve.stdout + approve.stderr
    published = open_warehouse(setup.uri).published_dataset
    assert setup.rows(
        f"SELECT DISTINCT variant FROM `{published}.v_estimates` WHERE run_date = @run_date"
    ) == [(b.slug,)]
    refused = run_cli("approve", "--run-date", DATE, "--by", "Jane", "--warehouse",
                      setup.uri)  # fmt: skip  # the champion (bootstrap 200) never ran
    assert refused.returncode == 1 and "champion variant" in refused.stderr


def test_run_manifest_reaches_the_warehouse_and_reruns_reproduce(setup: Setup) -> None:
    spec = load_program(canonical_program(setup.spec_a))
    setup.run("--program", setup.spec_a)
    work = setup.home / "work" / DATE
    cohort = str(read_cohorts(setup.home / "raw")["code"].iloc[0])
    # Run the program again for one cohort on the same inputs (a new attempt): rerun
    # from the model step (a plain run would adopt the finished attempt instead).
    model = work / "model" / cohort / spec.slug
    assert (model / "results.parquet").exists()
    again = run_cli("rerun", "--run-date", DATE, "--cohort", cohort, "--from", "model",
                    "--yes", "--local-scheduler", "--warehouse", setup.uri,
                    "--program", setup.spec_a)  # fmt: skip
    assert again.returncode == 0, again.stdout + again.stderr
    rows = open_warehouse(setup.uri).query(
        "SELECT * FROM pipeline_runs WHERE run_date = @run_date AND cohort = @cohort "
        "ORDER BY attempt",
        {"run_date": D, "cohort": cohort},
    )
    assert len(rows) == 2 and rows["attempt"].nunique() == 2
    version = pipeline.__version__
    estimator = f"survey-estimator=={importlib.metadata.version('survey-estimator')}"
    for row in rows.itertuples():
        out = model / "attempts" / row.attempt / "out"
        assert row.variant == spec.slug and row.program_fingerprint == spec.fingerprint
        assert row.results_sha256 == sha256(out / spec.results)
        assert row.input_sha256 == sha256(work / "cleanse" / "cohorts" / f"{cohort}.parquet")
        assert row.frame_sha256 == sha256(work / "cleanse" / "frame.csv")
        assert json.loads(row.params) == {"bootstrap": 20, "seed": spec.params["seed"]}
        command = json.loads(row.command)
        assert command[command.index("--bootstrap") + 1] == "20"
        assert str(out) in command and row.image == spec.image
        assert row.image_digest == estimator and row.pipeline_version == version
    # Equal manifest inputs, a deterministic program: equal results.
    first, second = rows.iloc[0], rows.iloc[1]
    for column in ("input_sha256", "frame_sha256", "params", "image_digest"):
        assert first[column] == second[column], column
    assert first["results_sha256"] == second["results_sha256"]
    # pipeline status shows the same manifest.
    status = run_cli("status", "--run-date", DATE, "--cohort", cohort, "--program",
                     setup.spec_a, "--warehouse", setup.uri, "--json")  # fmt: skip
    assert status.returncode == 0, status.stderr
    (shown,) = json.loads(status.stdout)["cohorts"]
    manifest = shown["manifest"]
    assert manifest["attempt"] == second["attempt"]
    assert manifest["results_sha256"] == second["results_sha256"]
    assert manifest["input_sha256"] == second["input_sha256"]
