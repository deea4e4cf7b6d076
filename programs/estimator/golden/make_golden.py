"""Regenerate the estimator's golden case (``[[golden]]`` in ../program.toml).

    .venv/bin/python programs/estimator/golden/make_golden.py
    .venv/bin/python programs/estimator/golden/make_golden.py --spec VARIANT.toml

Writes ``small/input.parquet`` and ``small/frame.csv`` from the pipeline's sample data
(fixed seed, one small cohort, cleansed as the pipeline cleanses it) and
``small/expected.csv``: the estimator's results on them with the spec's params. Run it
only when a change of the results is intended and reviewed: the expected file is what
``pipeline regress`` holds every later version to.

With ``--spec``, only the expected results of that spec's golden cases (a variant's, e.g.
programs/variants/bootstrap-400.toml): the estimator's results on each case's input and
frame with the spec's params, written to the case's ``expected`` file.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
SPEC = HERE.parent / "program.toml"
SEED, COHORTS, RESPONDENTS = 20261122, 2, 150
KEY = b"golden-case-key-not-a-secret"


def expected_of(spec_path: Path) -> None:
    from pipeline.core.spec import load_spec

    spec = load_spec(spec_path)
    for case in spec.golden:
        expected = Path(case.expected)
        expected.parent.mkdir(parents=True, exist_ok=True)
        estimates(Path(case.input), Path(case.frame), case.cohort, spec.params, expected)
        print(f"golden case {case.name!r} of {spec.slug}: {expected}")


def estimates(inp: Path, frame: Path, cohort: str, params: dict, expected: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "estimator", "--input", str(inp), "--frame", str(frame),
             "--cohort", cohort, "--output-dir", tmp, "--bootstrap", str(params["bootstrap"]),
             "--seed", str(params["seed"])],
            check=True,
        )  # fmt: skip
        expected.write_bytes((Path(tmp) / "estimates.csv").read_bytes())


def main() -> None:
    from pipeline.core import rawdata
    from pipeline.core.cleanse import CleanseRules, cleanse
    from pipeline.sampledata import generate

    out = HERE / "small"
    out.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw"
        generate(raw, cohorts=COHORTS, respondents=RESPONDENTS, seed=SEED)
        export = rawdata.read_raw_export(raw)
        result = cleanse(export, CleanseRules(), KEY)
    cohort = str(export.cohorts["code"].iloc[0])
    rows = result.cleansed[result.cleansed["cohort"] == cohort]
    unused = [c for c in rows.columns if c.startswith("share_") and rows[c].isna().all()]
    rows = rows.drop(columns=unused)
    rows.reset_index(drop=True).to_parquet(out / "input.parquet", index=False)
    export.frame.to_csv(out / "frame.csv", index=False)
    params = tomllib.loads(SPEC.read_text())["params"]
    estimates(out / "input.parquet", out / "frame.csv", cohort, params, out / "expected.csv")
    print(f"golden case 'small': cohort {cohort}, {len(rows)} rows -> {out}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--spec", type=Path, help="only the expected results of SPEC's cases")
    args = parser.parse_args()
    if args.spec:
        expected_of(args.spec)
    else:
        main()
