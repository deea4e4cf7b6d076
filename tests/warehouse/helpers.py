"""Test data and settings shared by the warehouse tests: what IngestSurvey and
IngestResults load, and the BigQuery fake's project."""

from __future__ import annotations

import pandas as pd

from pipeline.warehouse.bigquery import BigQuerySettings
from pipeline.warehouse.schema import survey_reference_tables

PROJECT, DATASET = "test-project", "survey"
BQ_URI = f"bigquery://{PROJECT}/{DATASET}"
# Retries in milliseconds, so that failure tests stay fast.
FAST = BigQuerySettings(retry_initial=0.01, retry_maximum=0.05, retry_deadline=1.0, job_timeout=30)


def estimates(values: list[float], version: str = "1.0", **extra) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "treatment": [f"t{i}" for i in range(len(values))],
            "estimate": values,
            "ci_low": [v - 1 for v in values],
            "ci_high": [v + 1 for v in values],
            "program_name": "est",
            "program_version": version,
            **extra,
        }
    )


def checks(passed: bool = True, version: str = "1.0") -> pd.DataFrame:
    return pd.DataFrame(
        {
            "check": ["not_empty", "interval_width"],
            "severity": ["error", "warning"],
            "passed": [passed, True],
            "detail": ["2 result rows" if passed else "0 result rows", "ok"],
            "program_name": "est",
            "program_version": version,
        }
    )


def runs(version: str = "1.0") -> pd.DataFrame:
    now = pd.Timestamp("2026-11-22T10:00:00Z")
    return pd.DataFrame(
        {
            "executor": ["local"],
            "job_id": ["pid-1"],
            "attempt": ["a1"],
            "started_at": [now],
            "finished_at": [now + pd.Timedelta(minutes=5)],
            "exit_code": [0],
            "vcpu_seconds": [300.0],
            "memory_gib_seconds": [600.0],
            "cost_usd": [0.0],
            "program_name": ["est"],
            "program_version": [version],
            "log_uri": ["file:///logs/a1.log"],
            "host": ["laptop"],
            "error": [None],
        }
    )


def results(values: list[float], passed: bool = True, version: str = "1.0") -> dict:
    """What IngestResults loads for one cohort."""
    return {
        "model_estimates": estimates(values if passed else [], version),
        "validation_checks": checks(passed, version),
        "pipeline_runs": runs(version),
    }


def survey(cohorts: dict[str, int]) -> dict:
    """What IngestSurvey loads: ``cohorts`` maps a cohort to its number of responses
    (every response in segment internal medicine x Kanto); one rejection per cohort."""
    responses = pd.DataFrame(
        [
            {
                "cohort": cohort,
                "response_id": f"{cohort}-{i}",
                "respondent_key": f"k{i}",
                "specialty": "internal",
                "region": "kanto",
                "facility_type": "clinic",
                "started_at": pd.Timestamp("2026-11-01T09:00:00Z"),
                "submitted_at": pd.Timestamp("2026-11-01T09:10:00Z"),
                "n_patients": 100,
                "attention_check": "3",
                "share_a": 60.0,
                "share_b": 40.0,
                "source_file": "responses/w1.csv",
                "source_row": i + 2,
            }
            for cohort, n in cohorts.items()
            for i in range(n)
        ]
    )
    rejections = pd.DataFrame(
        {
            "cohort": list(cohorts),
            "response_id": [f"{c}-bad" for c in cohorts],
            "reasons": "speeder",
            "source_file": "responses/w1.csv",
            "source_row": 99,
            "raw": "{}",
        }
    )
    summary = {
        "rejected_rows": len(cohorts),
        "cohorts": {
            c: {"label": c.title(), "cleansed": n, "rejected": 1} for c, n in cohorts.items()
        },
    }
    frame = pd.DataFrame(
        {
            "specialty": ["internal", "internal"],
            "region": ["kanto", "kansai"],
            "facility_type": ["clinic", "clinic"],
            "n_physicians": [100, 0],
        }
    )
    return {
        "survey_responses": responses,
        "survey_rejections": rejections,
        **survey_reference_tables(summary, frame),
    }
