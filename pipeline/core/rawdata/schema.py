"""The raw export's file names, columns and encodings (docs/contracts/raw-export.md)."""

from __future__ import annotations

import re

RESPONSE_COLUMNS: tuple[str, ...] = (
    "response_id",
    "respondent_id",
    "disease",
    "specialty",
    "region",
    "facility_type",
    "started_at",
    "submitted_at",
    "n_patients",
    "attention_check",
)
SHARE_PREFIX = "share_"
COHORTS_FILE = "cohorts.csv"
FRAME_FILE = "frame.csv"
COHORT_COLUMNS: tuple[str, ...] = ("code", "label")
FRAME_COLUMNS: tuple[str, ...] = ("specialty", "region", "facility_type", "n_physicians")
SEGMENT_COLUMNS: tuple[str, ...] = FRAME_COLUMNS[:3]
SOURCE_COLUMNS: tuple[str, ...] = ("source_file", "source_row")
COHORT_CODE = re.compile(r"[a-z0-9][a-z0-9_-]*")
BOM = b"\xef\xbb\xbf"
UTF8 = "utf-8"
CP932 = "cp932"
