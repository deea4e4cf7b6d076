"""What cleansing promises: reasons, columns, thresholds and the result's shape."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
import pyarrow as pa

REASONS: tuple[str, ...] = (
    "missing_required",
    "unparseable",
    "unknown_cohort",
    "out_of_range",
    "shares_not_100",
    "speeder",
    "attention_failed",
    "duplicate",
)

REQUIRED_COLUMNS: tuple[str, ...] = (
    "response_id",
    "respondent_id",
    "disease",
    "n_patients",
    "submitted_at",
)

CLEANSED_COLUMNS: tuple[str, ...] = (
    "cohort",
    "response_id",
    "respondent_key",
    "specialty",
    "region",
    "facility_type",
    "started_at",
    "submitted_at",
    "n_patients",
    "attention_check",
)

SOURCE_COLUMNS: tuple[str, ...] = ("source_file", "source_row")

REJECTION_COLUMNS: tuple[str, ...] = (
    "cohort",
    "response_id",
    "reasons",
    "source_file",
    "source_row",
    "raw",
)

KEY_HEX_DIGITS = 32

KEY_DERIVATION = b"pipeline respondent_key v2: two SipHash-2-4 keys"

TIMESTAMP_TYPE = pa.timestamp("us", tz="UTC")


@dataclass(frozen=True)
class CleanseRules:
    """Thresholds of the cleansing rules; defaults are the contract's (luigi.cfg [cleansing])."""

    min_duration_seconds: float = 120
    attention_expected: str = "3"
    n_patients_min: float = 0
    n_patients_max: float = 10000
    share_min: float = 0
    share_max: float = 100
    share_sum_tolerance: float = 1


@dataclass
class CleanseResult:
    """What ``cleanse`` returns.

    - ``cleansed``: ``CLEANSED_COLUMNS``, then one float64 ``share_<treatment>`` column per
      share column of the export (NaN = not answered), then ``source_file, source_row``.
      ``started_at``/``submitted_at`` are ``datetime64[us, UTC]``, ``n_patients`` int64.
    - ``rejections``: ``REJECTION_COLUMNS``; ``reasons`` is ``;``-joined in ``REASONS``
      order; ``raw`` a JSON object of the row's columns as delivered (its file's columns
      only, with ``respondent_id`` replaced by ``respondent_key``).
    - ``summary``: ``raw_rows, cleansed_rows, rejected_rows``, ``rejections_by_reason``
      (every reason → rows having it), ``cohorts`` (code → ``label, cleansed, rejected,
      share_columns`` answered in the cohort's cleansed rows) and ``share_columns``.
    """

    cleansed: pd.DataFrame
    rejections: pd.DataFrame
    summary: dict[str, Any]
