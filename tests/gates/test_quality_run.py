"""The data-quality gate in real runs: a clean first delivery passes (with metric packets
for rejection rates and drift on a real UDP socket); a truncated export the next month
stops every cohort before its program runs, with the reason in `pipeline status`."""

from __future__ import annotations

import json
from pathlib import Path

from tests.ops.conftest import (
    DogStatsdSink,
    cohort_codes,
    make_home,
    noop_spec,
    pipeline,
    wait_for,
)

D0, D1 = "2026-10-22", "2026-11-22"


def test_broken_export_stops_cohorts_before_their_program(tmp_path: Path) -> None:
    home = make_home(tmp_path / "home", cohorts=3, respondents=300, seed=5)
    spec = noop_spec(home / "noop.toml")
    codes = cohort_codes(home)
    sink = DogStatsdSink()
    try:
        first = pipeline(home, "run", "--run-date", D0, "--local-scheduler", "--workers", "2",
                         "--program", str(spec), **sink.env())  # fmt: skip
        assert first.returncode == 0, first.stdout + first.stderr
        assert wait_for(
            lambda: {t.get("cohort") for n, _, _, t in sink.metrics()
                     if n == "survey_pipeline.validate.drift"} >= set(codes),
            timeout=10,
        )  # fmt: skip
        got = sink.metrics()
        rates = {
            t["cohort"]: v for n, v, k, t in got if n == "survey_pipeline.quality.rejection_rate"
        }
        assert set(rates) == set(codes) and all(0 < v < 0.5 for v in rates.values()), rates
        assert all(
            k == "g" for n, _, k, _ in got if n.startswith("survey_pipeline.quality.rejection")
        )
        reasons = {t["reason"] for n, _, _, t in got if n == "survey_pipeline.quality.reason_rate"}
        assert {"speeder", "duplicate"} <= reasons
        drift = [(t["cohort"], v) for n, v, k, t in got if n == "survey_pipeline.validate.drift"]
        assert sorted(drift) == sorted((c, 0.0) for c in codes)  # first delivery
        # The figures later deliveries compare with.
        history = home / "work" / "quality-history"
        assert sorted(p.parent.name for p in history.glob(f"*/{D0}.json")) == sorted(codes)

        # A month later the export is cut short: about a tenth of the rows.
        broken = make_home(tmp_path / "broken", cohorts=3, respondents=30, seed=5)
        sink.lines.clear()
        second = pipeline(home, "run", "--run-date", D1, "--local-scheduler", "--workers", "2",
                          "--program", str(spec), "--raw", str(broken / "raw"),
                          **sink.env())  # fmt: skip
        assert second.returncode != 0
        assert wait_for(
            lambda: sum(1 for n, v, _, t in sink.metrics()
                        if n == "survey_pipeline.quality.failures" and v == 1
                        and t.get("check") == "dq_row_count") >= len(codes),
            timeout=10,
        )  # fmt: skip
        failures = {(t["cohort"], t["severity"]) for n, v, _, t in sink.metrics()
                    if n == "survey_pipeline.quality.failures" and v == 1
                    and t["check"] == "dq_row_count"}  # fmt: skip
        assert failures == {(c, "error") for c in codes}
    finally:
        sink.close()
    work = home / "work" / D1
    assert (work / "cleanse" / "summary.json").is_file()
    assert not (work / "model").exists(), "a program ran on a broken export"
    assert not list((work / "quality").glob("*.parquet"))
    assert not list((home / "work" / "quality-history").glob(f"*/{D1}.json"))
    status = pipeline(home, "status", "--run-date", D1, "--program", str(spec), "--json")
    assert status.returncode == 0, status.stderr
    rows = {c["cohort"]: c["steps"] for c in json.loads(status.stdout)["cohorts"]}
    for code in codes:
        assert rows[code]["quality"]["state"] == "failed"
        assert "DataQualityFailed" in rows[code]["quality"]["error"]
        assert "dq_row_count" in rows[code]["quality"]["error"]
        assert rows[code]["model"]["state"] == "pending"
