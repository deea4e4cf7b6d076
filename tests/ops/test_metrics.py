"""DogStatsD metrics: names, values and tags as a real UDP socket receives them; nothing
that identifies a respondent; and a pipeline that never fails for want of an agent."""

from __future__ import annotations

import csv
import io
import json
import socket
from pathlib import Path

import pytest

from pipeline import metrics
from tests.conftest import REPO
from tests.ops.conftest import (
    DATE,
    DogStatsdSink,
    Run,
    cohort_codes,
    free_port,
    make_home,
    noop_spec,
    pipeline,
    wait_for,
)


def test_only_allow_listed_tags_survive() -> None:
    metric = metrics.METRICS["model.runs"]
    tags = metrics.safe_tags(
        metric,
        {
            "cohort": "Asthma",  # lower-cased, as Datadog would
            "executor": "local",
            "status": "succeeded",
            "run_date": "2026-11-22",  # not allow-listed: unbounded
            "respondent_id": "R-000123",  # never
            "warehouse": "duckdb",  # allow-listed, but not declared for this metric
        },
    )
    assert tags == ["cohort:asthma", "executor:local", "status:succeeded"]
    assert metrics.tag_value("executor", "kubernetes") is None  # outside the vocabulary
    assert metrics.tag_value("cohort", "../../etc/passwd") is None
    assert metrics.tag_value("cohort", "a" * 65) is None
    assert metrics.tag_value("table", "survey_responses") == "survey_responses"
    assert metrics.tag_value("warehouse", "bigquery://proj/ds") is None


def test_docs_list_every_metric() -> None:
    doc = (REPO / "docs" / "metrics.md").read_text()
    for name, metric in metrics.METRICS.items():
        assert f"`survey_pipeline.{name}` | {metric.kind} |" in doc, name


def test_disabled_without_an_agent_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DD_AGENT_HOST", raising=False)
    client = metrics.client()
    assert not client.enabled
    client.increment("model.runs", 1, {"cohort": "x"})  # a no-op, no error


def test_client_sends_namespaced_checked_metrics(monkeypatch: pytest.MonkeyPatch) -> None:
    sink = DogStatsdSink()
    try:
        monkeypatch.setenv("DD_AGENT_HOST", "127.0.0.1")
        monkeypatch.setenv("DD_DOGSTATSD_PORT", str(sink.port))
        client = metrics.client()
        client.increment("orphans.reaped", 2, {"executor": "ecs", "job": "arn:aws:secret"})
        client.gauge("model.exit_code", 3, {"cohort": "asthma", "executor": "local"})
        client.distribution("model.duration", 1.5, {"cohort": "asthma", "status": "failed"})
        client.increment("not.declared", 1)  # dropped
        client.gauge("orphans.reaped", 1)  # declared as a count: dropped
        assert wait_for(lambda: len(sink.metrics()) >= 3, timeout=5)
    finally:
        sink.close()
    assert sorted(sink.metrics()) == [
        ("survey_pipeline.model.duration", 1.5, "d", {"cohort": "asthma", "status": "failed"}),
        ("survey_pipeline.model.exit_code", 3.0, "g", {"cohort": "asthma", "executor": "local"}),
        ("survey_pipeline.orphans.reaped", 2.0, "c", {"executor": "ecs"}),
    ]


def test_nothing_listening_never_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DD_AGENT_HOST", "127.0.0.1")
    monkeypatch.setenv("DD_DOGSTATSD_PORT", str(free_port(socket.SOCK_DGRAM)))
    client = metrics.client()
    for i in range(200):  # ICMP port-unreachable makes later sends fail: swallowed
        client.increment("cleanse.raw_rows", i)
    monkeypatch.setenv("DD_AGENT_HOST", "no-such-host.invalid")
    metrics.client().increment("cleanse.raw_rows", 1)


def test_pipeline_without_agent_still_succeeds(failed_run: Run) -> None:
    # failed_run sent its metrics to a port where nothing listens: only the cohort whose
    # program fails is not delivered.
    assert failed_run.result.returncode == 30, failed_run.result.stdout
    assert f"cohorts: {len(failed_run.codes) - 1} done, 1 failed" in failed_run.result.stdout


def test_run_metrics_reach_dogstatsd(tmp_path: Path, statsd: DogStatsdSink) -> None:
    home = make_home(tmp_path / "home")
    codes = cohort_codes(home)
    bad = codes[0]
    spec = noop_spec(tmp_path / "noop.toml", fail_cohort=bad)
    result = pipeline(home, "run", "--run-date", DATE, "--local-scheduler", "--workers", "2",
                      "--program", str(spec), **statsd.env())  # fmt: skip
    assert result.returncode == 30, result.stdout + result.stderr
    assert wait_for(lambda: any("scheduler.task.failed" in m[0] for m in statsd.metrics()), 10)
    got = statsd.metrics()
    summary = json.loads((home / "work" / DATE / "cleanse" / "summary.json").read_text())

    for name, _value, kind, tags in got:
        assert name.startswith("survey_pipeline."), name
        declared = metrics.METRICS[name.removeprefix("survey_pipeline.")]
        assert kind == {"count": "c", "gauge": "g", "distribution": "d"}[declared.kind]
        assert set(tags) <= set(declared.tags), (name, tags)
        for key, value in tags.items():
            assert metrics.tag_value(key, value) == value

    def values(name: str, **tags: str) -> list[float]:
        return [v for n, v, _k, t in got
                if n == f"survey_pipeline.{name}" and tags.items() <= t.items()]  # fmt: skip

    assert values("cleanse.raw_rows") == [summary["raw_rows"]]
    assert values("cleanse.rejected_rows") == [summary["rejected_rows"]]
    for reason, count in summary["rejections_by_reason"].items():
        assert values("cleanse.rejections", reason=reason) == [count]
    for code in codes:
        assert values("cleanse.cleansed_rows", cohort=code) == [
            summary["cohorts"][code]["cleansed"]
        ]
    assert values("model.runs", cohort=bad, status="failed") == [1]
    assert values("model.exit_code", cohort=bad) == [3]
    assert values("task.failures", step="model", cohort=bad) == [1]
    for code in codes[1:]:
        assert values("model.runs", cohort=code, executor="local", status="succeeded") == [1]
        assert len(values("model.duration", cohort=code)) == 1
        failures = values("validate.failures", cohort=code, severity="error")
        assert failures and set(failures) == {0}
        assert values("ingest.rows", table="model_estimates", cohort=code)
    assert values("ingest.rows", table="survey_responses", warehouse="duckdb") == [
        summary["cleansed_rows"]
    ]
    assert values("scheduler.task.started", task_family="runmodel", cohort=bad) == [1]
    assert values("scheduler.task.failed", step="model", cohort=bad) == [1]

    # Nothing that identifies a respondent, a response, a file or a setting.
    packets = "\n".join(statsd.lines)
    identifiers = set()
    for path in (home / "raw").rglob("*.csv"):
        data = path.read_bytes()
        text = data.decode("utf-8-sig") if data.startswith(b"\xef\xbb\xbf") else None
        if text is None:
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                text = data.decode("cp932")
        for row in csv.DictReader(io.StringIO(text)):
            identifiers.update(
                v.strip() for k, v in row.items()
                if k in ("respondent_id", "response_id") and v and len(v.strip()) >= 4
                and any(c.isalpha() for c in v)
            )  # fmt: skip
    assert identifiers
    leaked = sorted(i for i in identifiers if i.lower() in packets.lower())
    assert not leaked, leaked[:5]
    for secret in ("ops-test-key-not-a-secret", str(home), "duckdb://", "2026-11-22",
                   "2026_11_22", "noop.toml"):  # fmt: skip
        assert secret not in packets
