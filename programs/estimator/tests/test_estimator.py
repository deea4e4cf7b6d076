"""The estimator run for real: through its command line in a subprocess, through ``main``
in-process, and through the function API. Inputs are small DataFrames built here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from estimator import cli, model, run
from estimator.model import RESULT_COLUMNS, InputError, estimate

SPECIALTIES = ("cardiology", "endocrinology", "internal_medicine")
REGIONS = ("hokkaido", "kanto", "kansai", "kyushu")
FACILITIES = ("clinic", "hospital")
BOOTSTRAP = 30
PROGRAM_TOML = Path(__file__).parents[1] / "program.toml"


def make_survey(rows: int = 240, seed: int = 1, cohort: str = "dm2") -> pd.DataFrame:
    """Cleansed rows in the pipeline's format: three answered treatments, one treatment
    nobody in the cohort answered, and some per-row missing shares."""
    rng = np.random.default_rng(seed)
    shares = rng.dirichlet([5.0, 3.0, 1.0], size=rows) * 100
    started = pd.Timestamp("2026-11-01 09:00", tz="UTC") + pd.to_timedelta(
        rng.integers(0, 86_400, rows), unit="s"
    )
    survey = pd.DataFrame(
        {
            "cohort": cohort,
            "response_id": [f"R{i:05d}" for i in range(rows)],
            "respondent_key": [f"key{i:05d}" for i in range(rows)],
            "specialty": rng.choice(SPECIALTIES, rows),
            "region": rng.choice(REGIONS, rows),
            "facility_type": rng.choice(FACILITIES, rows),
            "started_at": started,
            "submitted_at": started + pd.Timedelta(minutes=9),
            "n_patients": rng.poisson(120, rows).astype("int64"),
            "attention_check": "3",
            "share_metformin": shares[:, 0].round(1),
            "share_insulin": shares[:, 1].round(1),
            "share_glp1": shares[:, 2].round(1),
            "share_unused": np.nan,
            "source_file": "export.csv",
            "source_row": np.arange(2, rows + 2, dtype="int64"),
        }
    )
    survey.loc[survey.index % 7 == 0, "share_glp1"] = np.nan
    return survey


def make_frame(seed: int = 2) -> pd.DataFrame:
    """Every segment, including a specialty nobody surveyed (oncology)."""
    rng = np.random.default_rng(seed)
    segments = [(s, r, f) for s in (*SPECIALTIES, "oncology") for r in REGIONS for f in FACILITIES]
    frame = pd.DataFrame(segments, columns=["specialty", "region", "facility_type"])
    return frame.assign(n_physicians=rng.integers(50, 2_000, len(frame)))


@pytest.fixture(autouse=True)
def blas_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """``cli.main`` sets the BLAS thread variables when none is set; setting them here
    keeps that from leaking into the rest of the test session."""
    for name in cli.THREAD_VARIABLES:
        monkeypatch.setenv(name, os.environ.get(name, "1"))


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    survey = make_survey()
    paths = {
        "parquet": tmp_path / "dm2.parquet",
        "csv": tmp_path / "dm2.csv",
        "frame": tmp_path / "frame.csv",
    }
    survey.to_parquet(paths["parquet"], index=False)
    survey.to_csv(paths["csv"], index=False)
    make_frame().to_csv(paths["frame"], index=False)
    return paths


def run_cli(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "estimator", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def cli_args(input_path: Path, frame: Path, out: Path, *extra: object) -> list[str]:
    args = ["--input", input_path, "--frame", frame, "--cohort", "dm2", "--output-dir", out]
    return [str(a) for a in (*args, *extra)]


def test_command_line_writes_one_row_per_answered_treatment(
    files: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    done = run_cli(*cli_args(files["parquet"], files["frame"], out, "--bootstrap", BOOTSTRAP))

    assert done.returncode == 0, done.stderr
    results = pd.read_csv(out / "estimates.csv")
    assert list(results.columns) == list(RESULT_COLUMNS)
    assert results["treatment"].tolist() == ["metformin", "insulin", "glp1"]
    assert (results["ci_low"] <= results["estimate"]).all()
    assert (results["estimate"] <= results["ci_high"]).all()
    assert (results["ci_low"] < results["ci_high"]).all()
    assert (results["ci_low"] >= 0).all()
    assert results["n_respondents"].eq(240).all()
    assert results.set_index("treatment")["n_answered"].to_dict() == {
        "metformin": 240,
        "insulin": 240,
        "glp1": 240 - 35,
    }
    diagnostics = json.loads((out / "diagnostics.json").read_text())
    assert diagnostics["rows"] == 240
    assert diagnostics["bootstrap"] == BOOTSTRAP
    assert diagnostics["cohort"] == "dm2"
    assert diagnostics["frame_segments_unsurveyed"] >= 8  # oncology, at least
    assert diagnostics["runtime_seconds"] > 0
    assert f"bootstrap {BOOTSTRAP}/{BOOTSTRAP}" in done.stdout
    assert not list(out.glob(".*partial"))


def test_program_spec_command_runs_and_writes_its_results_file(
    files: dict[str, Path], tmp_path: Path
) -> None:
    spec = tomllib.loads(PROGRAM_TOML.read_text(encoding="utf-8"))
    values = {
        "input": files[spec["input_format"]],
        "frame": files["frame"],
        "cohort": "dm2",
        "run_date": "2026-11-22",
        "output_dir": tmp_path / "out",
        "checkpoint_dir": tmp_path / "out" / spec["checkpoint_dir"],
        "params": SimpleNamespace(**spec["params"]),
    }
    command = [arg.format(**values) for arg in spec["command"]]
    assert command[:3] == ["python", "-m", "estimator"]

    done = subprocess.run(
        [sys.executable, *command[1:]], capture_output=True, text=True, timeout=120
    )

    assert done.returncode == 0, done.stderr
    results = pd.read_csv(tmp_path / "out" / spec["outputs"]["results"])
    assert {"treatment", "estimate", "ci_low", "ci_high"} <= set(results.columns)
    diagnostics = json.loads((tmp_path / "out" / "diagnostics.json").read_text())
    assert diagnostics["bootstrap"] == spec["params"]["bootstrap"]
    assert diagnostics["seed"] == spec["params"]["seed"]


def test_csv_and_parquet_inputs_give_identical_results(
    files: dict[str, Path], tmp_path: Path
) -> None:
    from_csv, from_parquet = tmp_path / "csv", tmp_path / "parquet"

    done = run_cli(*cli_args(files["csv"], files["frame"], from_csv, "--bootstrap", BOOTSTRAP))
    assert done.returncode == 0, done.stderr
    args = cli_args(files["parquet"], files["frame"], from_parquet, "--bootstrap", BOOTSTRAP)
    assert cli.main(args) == 0

    csv_bytes = (from_csv / "estimates.csv").read_bytes()
    assert csv_bytes == (from_parquet / "estimates.csv").read_bytes()


def test_same_seed_gives_identical_output(files: dict[str, Path], tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    for out in (first, second):
        args = cli_args(files["parquet"], files["frame"], out, "--bootstrap", 20, "--seed", 7)
        assert cli.main(args) == 0

    assert (first / "estimates.csv").read_bytes() == (second / "estimates.csv").read_bytes()


def test_different_seed_changes_intervals_not_estimates() -> None:
    survey, frame = make_survey(), make_frame()

    one = estimate(survey, frame, bootstrap=BOOTSTRAP, seed=1).estimates
    two = estimate(survey, frame, bootstrap=BOOTSTRAP, seed=2).estimates

    pd.testing.assert_series_equal(one["estimate"], two["estimate"])
    assert not one["ci_low"].equals(two["ci_low"])
    assert not one["ci_high"].equals(two["ci_high"])


def test_bootstrap_count_is_recorded_and_reported(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for count in (10, 40):
        out = tmp_path / f"b{count}"
        assert cli.main(cli_args(files["parquet"], files["frame"], out, "--bootstrap", count)) == 0
        assert json.loads((out / "diagnostics.json").read_text())["bootstrap"] == count
        assert f"bootstrap {count}/{count}" in capsys.readouterr().out


def test_known_population_total_is_recovered() -> None:
    """Every physician sees 100 patients, 30% on metformin; insulin is 20% for half of
    the respondents of every cell and unanswered (0) for the others: 10% overall."""
    cells = [(s, r, f) for s in SPECIALTIES for r in REGIONS for f in FACILITIES]
    rows = [(*cell, answered) for cell in cells for answered in (True, False)]
    survey = pd.DataFrame(rows, columns=["specialty", "region", "facility_type", "answered"])
    survey = survey.assign(
        cohort="dm2",
        respondent_key=[f"k{i}" for i in range(len(survey))],
        n_patients=100,
        share_metformin=30.0,
        share_insulin=np.where(survey["answered"], 20.0, np.nan),
    ).drop(columns="answered")
    frame = make_frame()
    patients = 100.0 * frame["n_physicians"].sum()

    result = estimate(survey, frame, bootstrap=10, seed=3).estimates.set_index("treatment")

    # Not exact: the intercept carries a tiny ridge penalty (see model.INTERCEPT_SCALE).
    assert result.loc["metformin", "estimate"] == pytest.approx(0.3 * patients, rel=1e-5)
    assert result.loc["insulin", "estimate"] == pytest.approx(0.1 * patients, rel=1e-5)
    assert result.loc["insulin", "share_pct"] == pytest.approx(10.0, abs=1e-3)
    assert (result["ci_low"] <= result["estimate"]).all()
    assert (result["estimate"] <= result["ci_high"]).all()


def test_interval_is_widened_to_contain_the_point_estimate() -> None:
    point = np.array([5.0, 50.0])
    replicates = np.array([[10.0, 40.0], [12.0, 60.0], [11.0, 55.0]])

    low, high, widened = model._interval(point, replicates)

    assert low[0] == 5.0 and high[0] > 10.0
    assert widened.tolist() == [True, False]
    assert (low <= point).all() and (point <= high).all()


def test_unsurveyed_segments_are_predicted() -> None:
    survey = make_survey()
    frame = make_frame()
    surveyed = frame[frame["specialty"] != "oncology"]

    everyone = estimate(survey, frame, bootstrap=10).estimates.set_index("treatment")
    surveyed_only = estimate(survey, surveyed, bootstrap=10).estimates.set_index("treatment")

    assert (everyone["estimate"] > surveyed_only["estimate"]).all()
    assert np.isfinite(everyone[["estimate", "ci_low", "ci_high"]].to_numpy()).all()


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda s: s.drop(columns="region"), "column 'region' is missing"),
        (lambda s: s.head(0), "no rows"),
        (lambda s: s.drop(columns=[c for c in s if c.startswith("share_")]), "share_<treatment>"),
        (
            lambda s: s.assign(share_insulin=np.where(s.index == 4, 150.0, s["share_insulin"])),
            "column 'share_insulin': 1 value(s) outside 0..100 (first: row 5 (export.csv line 6)",
        ),
        (lambda s: s.assign(cohort=np.where(s.index == 3, "copd", "dm2")), "column 'cohort'"),
    ],
    ids=["missing-column", "empty", "no-share-columns", "share-out-of-range", "other-cohort"],
)
def test_bad_input_exits_2_naming_file_and_column(
    tmp_path: Path, change: Callable[[pd.DataFrame], pd.DataFrame], expected: str
) -> None:
    survey_path, frame_path = tmp_path / "bad.parquet", tmp_path / "frame.csv"
    change(make_survey()).to_parquet(survey_path, index=False)
    make_frame().to_csv(frame_path, index=False)

    done = run_cli(*cli_args(survey_path, frame_path, tmp_path / "out"))

    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert str(survey_path) in done.stderr
    assert expected in done.stderr
    assert not (tmp_path / "out" / "estimates.csv").exists()


def test_bad_csv_value_names_column_and_raw_line(tmp_path: Path) -> None:
    survey = make_survey().astype({"n_patients": "string"})
    survey.loc[9, "n_patients"] = "many"
    path, frame = tmp_path / "dm2.csv", tmp_path / "frame.csv"
    survey.to_csv(path, index=False)
    make_frame().to_csv(frame, index=False)

    done = run_cli(*cli_args(path, frame, tmp_path / "out"))

    assert done.returncode == 2
    assert (
        f"{path}: column 'n_patients': 1 value(s) not a number "
        "(first: row 10 (export.csv line 11), value 'many')"
    ) in done.stderr


def test_command_line_module_loads_no_numpy() -> None:
    """BLAS reads its thread count when numpy loads, so ``cli`` must not load it early."""
    probe = "import sys, estimator.cli; assert 'numpy' not in sys.modules, 'numpy loaded'"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_unwritable_output_exits_1(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("")

    assert cli.main(cli_args(files["parquet"], files["frame"], blocker / "out")) == 1
    assert f"{blocker / 'out'}: cannot create" in capsys.readouterr().err


def test_missing_files_and_frame_columns_exit_2(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nowhere.parquet"
    assert cli.main(cli_args(missing, files["frame"], tmp_path / "out")) == 2
    assert f"{missing}: input file not found" in capsys.readouterr().err

    bad_frame = tmp_path / "bad_frame.csv"
    make_frame().drop(columns="n_physicians").to_csv(bad_frame, index=False)
    assert cli.main(cli_args(files["parquet"], bad_frame, tmp_path / "out")) == 2
    assert f"{bad_frame}: column 'n_physicians' is missing" in capsys.readouterr().err

    wrong_type = tmp_path / "dm2.json"
    wrong_type.write_text("{}")
    assert cli.main(cli_args(wrong_type, files["frame"], tmp_path / "out")) == 2
    assert "use .parquet or .csv" in capsys.readouterr().err


def test_run_api_returns_diagnostics(files: dict[str, Path], tmp_path: Path) -> None:
    messages: list[str] = []

    diagnostics = run.run(
        files["csv"],
        files["frame"],
        "dm2",
        tmp_path / "out",
        bootstrap=12,
        seed=5,
        log=messages.append,
    )

    assert diagnostics["bootstrap"] == 12 and diagnostics["seed"] == 5
    assert diagnostics["treatments"] == ["metformin", "insulin", "glp1"]
    assert "bootstrap 12/12" in messages
    assert (tmp_path / "out" / run.RESULTS).exists()


def test_function_api_raises_input_error_naming_the_source() -> None:
    shares = ("share_unused", "share_metformin", "share_insulin", "share_glp1")
    survey = make_survey().assign(**dict.fromkeys(shares, np.nan))

    with pytest.raises(InputError, match=r"^cohort\.parquet: column 'share_<treatment>'"):
        estimate(survey, make_frame(), survey_source="cohort.parquet")


class _Stop(Exception):
    pass


def test_a_resumed_bootstrap_gives_the_uninterrupted_results_exactly() -> None:
    """Stopped after 37 of 120 replicates, resumed from what the checkpoint holds (the
    replicates and the generator's state): the same estimates, to the last bit."""
    survey, frame = make_survey(), make_frame()
    whole = estimate(survey, frame, bootstrap=120, seed=9).estimates
    saved: list[model.Replicates] = []

    def stop_at_37(replicates: model.Replicates) -> None:
        saved.append(replicates)
        if replicates.done == 37:
            raise _Stop

    with pytest.raises(_Stop):
        estimate(survey, frame, bootstrap=120, seed=9, checkpoint=stop_at_37)
    last = saved[-1]
    # What a checkpoint file holds: copies, through JSON for the generator's state.
    kept = model.Replicates(last.done, last.bootstrap, last.seed, last.values.copy(),
                            json.loads(json.dumps(last.rng_state)))  # fmt: skip
    resumed = estimate(survey, frame, bootstrap=120, seed=9, resume=kept)
    pd.testing.assert_frame_equal(resumed.estimates, whole, check_exact=True)
    assert resumed.diagnostics["bootstrap_resumed"] == 37
    # A checkpoint of another seed or bootstrap count is not used.
    other = estimate(survey, frame, bootstrap=120, seed=10, resume=kept)
    assert other.diagnostics["bootstrap_resumed"] == 0


def test_sigterm_saves_the_checkpoint_and_a_rerun_resumes(
    files: dict[str, Path], tmp_path: Path
) -> None:
    out, checkpoint = tmp_path / "out", tmp_path / "ck"
    args = cli_args(files["parquet"], files["frame"], out, "--bootstrap", 3000,
                    "--checkpoint-dir", checkpoint)  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "estimator", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    for line in proc.stdout:  # wait until the bootstrap runs
        if line.startswith("bootstrap "):
            break
    proc.terminate()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == cli.EXIT_STOPPED, err
    assert (checkpoint / run.CHECKPOINT).exists() and not (out / "estimates.csv").exists()
    done = run.load_checkpoint(checkpoint).done
    resumed = run_cli(*cli_args(files["parquet"], files["frame"], out, "--bootstrap", 3000,
                                "--checkpoint-dir", checkpoint))  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming after {done}/3000" in resumed.stdout
    whole = run_cli(*cli_args(files["parquet"], files["frame"], tmp_path / "whole",
                              "--bootstrap", 3000))  # fmt: skip
    assert whole.returncode == 0
    whole_bytes = (tmp_path / "whole" / "estimates.csv").read_bytes()
    assert (out / "estimates.csv").read_bytes() == whole_bytes
