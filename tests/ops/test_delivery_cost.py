"""Cost per delivery: vCPU-seconds, GiB-seconds and USD per cohort and per delivery, every
attempt counted (a failed one re-run, a cloud task the service interrupted), in `pipeline
status` (text and --json), the run's summary, the report and the delivery.* metrics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.layout import Layout
from tests.ops.conftest import DATE, DogStatsdSink, cohort_codes, make_home, pipeline, wait_for
from tests.ops.test_assistant import flaky_spec

# Local rows record the CPU the program used: priced high, so that cents show.
PRICES = "[cost]\nlocal_vcpu_hour = 3600\nlocal_gib_hour = 36\n"


def rows_of(work: Path, cohort: str) -> list[dict]:
    return [
        json.loads(p.read_text())
        for p in sorted(work.glob(f"model/{cohort}/*/attempts/*/**/*.json"))
        if p.name != "job.json" and p.name != "compute.json" and "out" not in p.parts
    ]


def test_abandoned_attempts_count_in_status_summary_report_and_metrics(tmp_path: Path) -> None:
    home = make_home(tmp_path / "home", cohorts=2)
    first, second = cohort_codes(home)
    cause = tmp_path / "cause.txt"
    cause.write_text(first)
    spec = flaky_spec(tmp_path / "flaky.toml", cause)
    prices = tmp_path / "prices.cfg"
    prices.write_text(PRICES)
    sink = DogStatsdSink()
    env = {"LUIGI_CONFIG_PATH": str(prices), **sink.env()}
    args = ("run", "--run-date", DATE, "--local-scheduler", "--program", str(spec))
    try:
        failed = pipeline(home, *args, **env)
        assert failed.returncode == 30, failed.stdout + failed.stderr
        cause.write_text("")
        again = pipeline(home, *args, **env)
        assert again.returncode == 0, again.stdout + again.stderr
        work = home / "work" / DATE
        first_rows = rows_of(work, first)
        assert sorted(r["status"] for r in first_rows) == ["failed", "succeeded"]
        failed_row = next(r for r in first_rows if r["status"] == "failed")
        assert failed_row["cost_usd"] > 0  # the failed attempt's compute was paid for
        paid = sum(r["cost_usd"] for r in first_rows)

        # The metric: the cohort's delivery, its failed attempt included.
        def gauges(name: str) -> dict[str, float]:
            return {
                m[3]["cohort"]: m[1]
                for m in sink.metrics()
                if m[0] == f"survey_pipeline.delivery.{name}" and m[2] == "g"
            }

        assert wait_for(lambda: first in gauges("cost_usd"), timeout=10)
        assert gauges("cost_usd")[first] == pytest.approx(paid, abs=1e-5)
        assert gauges("abandoned_cost_usd")[first] == pytest.approx(failed_row["cost_usd"], 1e-5)
        assert {m[3]["executor"] for m in sink.metrics() if ".delivery." in m[0]} == {"local"}
        # The run's summary.
        assert "cost: $" in again.stdout and "1 abandoned" in again.stdout
    finally:
        sink.close()

    # A cloud task the service interrupted under the attempt that succeeded (as the ECS
    # executor records a Spot interruption): its compute counts too.
    succeeded = next(r for r in first_rows if r["status"] == "succeeded")
    layout = Layout(str(home / "work"), DATE)
    slug = next((work / "model" / first).iterdir()).name
    interrupted = Path(layout.attempt_interrupted(first, slug, succeeded["attempt"], 1))
    interrupted.parent.mkdir(parents=True, exist_ok=True)
    interrupted.write_text(json.dumps({
        **succeeded, "job_id": "arn:aws:ecs:task/spot-1", "status": "abandoned",
        "vcpu_seconds": 1000.0, "memory_gib_seconds": 2000.0, "cost_usd": 5.0,
        "capacity": "spot", "exit_code": None,
    }))  # fmt: skip

    status = pipeline(home, "status", "--run-date", DATE, "--program", str(spec), "--json",
                      LUIGI_CONFIG_PATH=str(prices))  # fmt: skip
    assert status.returncode == 0, status.stderr
    data = json.loads(status.stdout)
    cost = {c["cohort"]: c["cost"] for c in data["cohorts"]}
    assert cost[first]["cost_usd"] == pytest.approx(paid + 5.0, abs=1e-5)
    assert cost[first]["vcpu_seconds"] >= 1000.0
    assert cost[first]["submissions"] == 3 and cost[first]["abandoned"] == 2
    assert cost[first]["by_capacity"] == {"spot": 5.0}
    assert cost[second]["abandoned"] == 0 and cost[second]["submissions"] == 1
    total = cost[first]["cost_usd"] + cost[second]["cost_usd"]
    assert data["cost"]["cost_usd"] == pytest.approx(total, abs=1e-5)
    assert list(data["cost_by_variant"].values()) == [data["cost"]]

    text = pipeline(home, "status", "--run-date", DATE, "--program", str(spec))
    assert f"cost: ${total:,.2f}" in text.stdout and "2 abandoned: $5." in text.stdout

    out = tmp_path / "report.html"
    report = pipeline(home, "report", "--run-date", DATE, "--program", str(spec), "--out",
                      str(out))  # fmt: skip
    assert report.returncode == 0, report.stderr
    html = out.read_text()
    assert "compute cost" in html and f"${total:,.2f}" in html
