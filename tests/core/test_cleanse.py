"""Cleansing rules: one test per rule, normalisation, duplicates, conservation, privacy."""

from __future__ import annotations

import hmac
import json
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from pipeline.core.cleanse import (
    CLEANSED_COLUMNS,
    REASONS,
    REJECTION_COLUMNS,
    CleanseRules,
    cleanse,
    parse_timestamps,
)
from pipeline.core.rawdata import RESPONSE_COLUMNS, RawExport, read_raw_export
from pipeline.errors import ConfigError, InputError
from pipeline.sampledata import generate

KEY = b"test-key-not-a-secret"
SHARES = ["share_a", "share_b"]
VALID: dict[str, str] = {
    "response_id": "R1",
    "respondent_id": "D1",
    "disease": "diabetes",
    "specialty": "内科",
    "region": "関東",
    "facility_type": "病院",
    "started_at": "2024/06/03 10:00:00",
    "submitted_at": "2024/06/03 10:10:00",
    "n_patients": "35",
    "attention_check": "3",
    "share_a": "60",
    "share_b": "40",
}


def make_export(*changes: dict[str, Any], share_columns: list[str] = SHARES) -> RawExport:
    """One response row per ``changes`` (VALID updated by it), as ``read_raw_export`` gives."""
    rows = []
    for i, change in enumerate(changes):
        row = {**VALID, "response_id": f"R{i + 1}", "respondent_id": f"D{i + 1}", **change}
        rows.append(row)
    columns = [*RESPONSE_COLUMNS, *share_columns]
    df = pd.DataFrame([{c: row.get(c) for c in columns} for row in rows], dtype="str")
    df["source_file"] = "responses/r.csv"
    df["source_row"] = np.arange(2, len(rows) + 2, dtype=np.int64)
    cohorts = pd.DataFrame({"code": ["diabetes", "asthma"], "label": ["糖尿病", "喘息"]})
    frame = pd.DataFrame(
        {"specialty": ["内科"], "region": ["関東"], "facility_type": ["病院"], "n_physicians": [9]}
    )
    return RawExport(df, cohorts, frame, list(share_columns), {})


def run(*changes: dict[str, Any], rules: CleanseRules | None = None):
    return cleanse(make_export(*changes), rules or CleanseRules(), KEY)


def reasons_of(*changes: dict[str, Any], rules: CleanseRules | None = None) -> list[str]:
    """The reasons of each row, "" for a cleansed row, in input order."""
    result = run(*changes, rules=rules)
    by_row = dict(zip(result.rejections["source_row"], result.rejections["reasons"], strict=True))
    return [by_row.get(row, "") for row in range(2, len(changes) + 2)]


def expected_key(respondent_id: str, key: bytes = KEY) -> str:
    normalised = unicodedata.normalize("NFKC", respondent_id).strip().encode()
    return hmac.new(key, normalised, "sha256").hexdigest()[:32]


# --- happy path -----------------------------------------------------------------------------


def test_a_valid_row_is_cleansed_with_the_contract_layout() -> None:
    result = run({})
    assert result.rejections.empty
    assert list(result.rejections.columns) == list(REJECTION_COLUMNS)
    out = result.cleansed
    assert list(out.columns) == [*CLEANSED_COLUMNS, *SHARES, "source_file", "source_row"]
    row = out.iloc[0]
    assert row["cohort"] == "diabetes"
    assert row["respondent_key"] == expected_key("D1")
    assert out["started_at"].dtype == "datetime64[us, UTC]"
    assert row["started_at"] == pd.Timestamp("2024-06-03T01:00:00Z")  # JST when no offset
    assert row["submitted_at"] == pd.Timestamp("2024-06-03T01:10:00Z")
    assert out["n_patients"].dtype == np.int64
    assert row["n_patients"] == 35
    assert row["attention_check"] == "3"
    assert out["share_a"].dtype == np.float64
    assert (row["share_a"], row["share_b"]) == (60.0, 40.0)
    assert (row["source_file"], row["source_row"]) == ("responses/r.csv", 2)
    assert result.summary == {
        "raw_rows": 1,
        "cleansed_rows": 1,
        "rejected_rows": 0,
        "rejections_by_reason": dict.fromkeys(REASONS, 0),
        "cohorts": {
            "diabetes": {
                "label": "糖尿病",
                "cleansed": 1,
                "rejected": 0,
                "share_columns": SHARES,
            },
            "asthma": {"label": "喘息", "cleansed": 0, "rejected": 0, "share_columns": []},
        },
        "share_columns": SHARES,
    }


# --- one test per rule ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "reasons"),
    [
        ({"response_id": ""}, "missing_required"),
        ({"respondent_id": " "}, "missing_required"),
        ({"disease": "　"}, "missing_required"),
        ({"n_patients": ""}, "missing_required"),
        ({"submitted_at": ""}, "missing_required"),
        ({"respondent_id": None}, "missing_required"),
        ({"n_patients": "abc"}, "unparseable"),
        ({"n_patients": "12.5"}, "unparseable"),
        ({"n_patients": "約50"}, "unparseable"),
        ({"started_at": "2024-13-01 00:00:00"}, "unparseable"),
        ({"submitted_at": "yesterday"}, "unparseable"),
        ({"submitted_at": "2024-02-30T10:10:00+09:00"}, "unparseable"),
        ({"share_a": "N/A"}, "unparseable"),
        ({"disease": "gout"}, "unknown_cohort"),
        ({"n_patients": "10001"}, "out_of_range"),
        ({"n_patients": "-1"}, "out_of_range"),
        ({"share_a": "101", "share_b": "-1"}, "out_of_range"),
        ({"share_a": "50"}, "shares_not_100"),
        ({"share_a": "", "share_b": ""}, "shares_not_100"),
        ({"share_a": "61.1"}, "shares_not_100"),
        ({"submitted_at": "2024/06/03 10:01:59"}, "speeder"),
        ({"submitted_at": "2024/06/03 09:59:00"}, "speeder"),
        ({"attention_check": "2"}, "attention_failed"),
        ({"attention_check": ""}, "attention_failed"),
    ],
)
def test_each_rule(change: dict[str, Any], reasons: str) -> None:
    assert reasons_of(change) == [reasons]


@pytest.mark.parametrize(
    "change",
    [
        {"n_patients": "10000"},
        {"n_patients": "0"},
        {"submitted_at": "2024/06/03 10:02:00"},  # exactly 120 s
        {"share_a": "59", "share_b": "40"},  # 99: within 100 ± 1
        {"share_a": "61", "share_b": "40"},
        {"share_a": "100", "share_b": ""},  # a missing share counts as 0
        {"share_a": "33.3", "share_b": "66.7"},
        {"started_at": ""},  # not required; no speeder check without it
    ],
)
def test_boundaries_that_pass(change: dict[str, Any]) -> None:
    assert reasons_of(change) == [""]


def test_every_reason_that_applies_in_table_order() -> None:
    change = {
        "n_patients": "abc",
        "attention_check": "1",
        "submitted_at": "2024/06/03 10:00:30",
        "disease": "gout",
        "share_a": "10",
    }
    assert reasons_of(change) == [
        "unparseable;unknown_cohort;shares_not_100;speeder;attention_failed"
    ]
    assert reasons_of({"response_id": "", "share_a": "x"}) == ["missing_required;unparseable"]


def test_an_unparseable_share_leaves_the_sum_unjudged() -> None:
    assert reasons_of({"share_a": "abc", "share_b": "10"}) == ["unparseable"]


def test_rules_are_configurable() -> None:
    change = {"submitted_at": "2024/06/03 10:01:30", "attention_check": "9", "n_patients": "20"}
    rules = CleanseRules(min_duration_seconds=60, attention_expected="９", n_patients_max=10)
    assert reasons_of(change) == ["speeder;attention_failed"]
    assert reasons_of(change, rules=rules) == ["out_of_range"]


# --- duplicates -----------------------------------------------------------------------------


def test_duplicate_keeps_the_latest_among_valid_rows_only() -> None:
    same = {"respondent_id": "D7"}
    reasons = reasons_of(
        {**same, "submitted_at": "2024/06/03 10:10:00"},
        {**same, "started_at": "2024/06/04 10:00:00", "submitted_at": "2024/06/04 10:10:00"},
        # latest, but a speeder: takes no part, so the row above stays
        {**same, "started_at": "2024/06/05 10:00:00", "submitted_at": "2024/06/05 10:00:10"},
        # another disease of the same respondent is not a duplicate
        {**same, "disease": "asthma"},
        # the same respondent written in full width is the same respondent
        {"respondent_id": "Ｄ７", "submitted_at": "2024/06/03 10:11:00"},
    )
    assert reasons == ["duplicate", "", "speeder", "", "duplicate"]


def test_duplicate_tie_goes_to_the_later_row() -> None:
    assert reasons_of({"respondent_id": "D1"}, {"respondent_id": "D1"}) == ["duplicate", ""]


def test_duplicates_are_judged_across_timestamp_formats() -> None:
    reasons = reasons_of(
        {"respondent_id": "X", "submitted_at": "2024-06-03T02:00:00Z"},  # 11:00 JST: later
        {"respondent_id": "X", "submitted_at": "2024/06/03 10:30:00"},
    )
    assert reasons == ["", "duplicate"]


# --- normalisation --------------------------------------------------------------------------


def test_values_are_normalised() -> None:
    result = run(
        {"n_patients": "１，２００", "disease": " ＤＩＡＢＥＴＥＳ ", "attention_check": "３"},
        {"n_patients": "1,200", "share_a": " 60 ", "share_b": "４０"},
        {"n_patients": " 35 ", "disease": "Asthma", "specialty": " 内科　"},
        {"n_patients": "1 200", "response_id": " R4 "},
    )
    out = result.cleansed
    assert out["n_patients"].tolist() == [1200, 1200, 35, 1200]
    assert out["cohort"].tolist() == ["diabetes", "diabetes", "asthma", "diabetes"]
    assert out["attention_check"].tolist() == ["3"] * 4
    assert out["share_b"].tolist() == [40.0] * 4
    assert out["specialty"].tolist() == ["内科"] * 4
    assert out["response_id"].tolist() == ["R1", "R2", "R3", "R4"]


@pytest.mark.parametrize(
    ("text", "utc"),
    [
        ("2024-06-03T10:00:00+09:00", "2024-06-03T01:00:00"),
        ("2024-06-03T01:00:00Z", "2024-06-03T01:00:00"),
        ("2024-06-03T10:00:00", "2024-06-03T01:00:00"),  # no offset: JST
        ("2024-06-03 10:00:00", "2024-06-03T01:00:00"),
        ("2024/06/03 10:00:00", "2024-06-03T01:00:00"),
        ("2024/6/3 10:00:00", "2024-06-03T01:00:00"),
        ("2024-06-03T10:00", "2024-06-03T01:00:00"),
        ("2024-06-02T20:00:00-05:00", "2024-06-03T01:00:00"),
        ("2024-06-03T10:00:00+0900", "2024-06-03T01:00:00"),
        ("2024-06-03T10:00:00.250+09:00", "2024-06-03T01:00:00.250"),
        ("２０２４／０６／０３　１０：００：００", "2024-06-03T01:00:00"),
        ("2024-06-03T00:30:00+09:00", "2024-06-02T15:30:00"),
    ],
)
def test_timestamp_formats(text: str, utc: str) -> None:
    micros, ok, present = parse_timestamps(pa.array([text], pa.large_string()))
    assert ok[0] and present[0]
    assert pd.Timestamp(int(micros[0]), unit="us") == pd.Timestamp(utc)


@pytest.mark.parametrize(
    "text",
    [
        "2023-02-29T00:00:00",
        "2024-06-03T24:00:00",
        "2024-06-03T10:00:00+25:00",
        "2024-06-03",
        "不明",
    ],
)
def test_timestamps_that_do_not_parse(text: str) -> None:
    _, ok, present = parse_timestamps(pa.array([text], pa.large_string()))
    assert present[0] and not ok[0]


# --- privacy --------------------------------------------------------------------------------


def test_respondent_id_never_leaves_cleansing() -> None:
    result = run({"respondent_id": "SECRET-1"}, {"respondent_id": "SECRET-2", "n_patients": "x"})
    assert "respondent_id" not in result.cleansed.columns
    assert "respondent_id" not in result.rejections.columns
    raw = json.loads(result.rejections["raw"].iloc[0])
    assert "respondent_id" not in raw
    assert raw["respondent_key"] == expected_key("SECRET-2")
    for frame in (result.cleansed, result.rejections):
        assert "SECRET" not in frame.to_csv()


def test_keyed_hash_depends_on_the_key() -> None:
    export = make_export({"respondent_id": "D1"}, {"respondent_id": " Ｄ１ ", "disease": "asthma"})
    first = cleanse(export, CleanseRules(), b"key-one").cleansed
    again = cleanse(export, CleanseRules(), b"key-one").cleansed
    other = cleanse(export, CleanseRules(), b"key-two").cleansed
    assert first["respondent_key"].tolist() == again["respondent_key"].tolist()
    assert first["respondent_key"].iloc[0] == first["respondent_key"].iloc[1]  # NFKC-same id
    assert first["respondent_key"].iloc[0] == expected_key("D1", b"key-one")
    assert first["respondent_key"].iloc[0] != other["respondent_key"].iloc[0]
    long_key = b"k" * 100  # longer than a SHA-256 block: hashed first, as RFC 2104 says
    assert cleanse(export, CleanseRules(), long_key).cleansed["respondent_key"].iloc[
        0
    ] == expected_key("D1", long_key)


def test_empty_key_is_refused() -> None:
    with pytest.raises(ConfigError, match="key is empty"):
        cleanse(make_export({}), CleanseRules(), b"")


# --- rejections keep what was delivered --------------------------------------------------


def test_rejection_keeps_the_raw_values_of_its_own_file() -> None:
    export = make_export(
        {"n_patients": " １，２ ", "share_a": 'say "hi"\n', "share_b": None, "disease": "Gout"}
    )
    result = cleanse(export, CleanseRules(), KEY)
    rejection = result.rejections.iloc[0]
    assert rejection["cohort"] == "gout"
    assert rejection["response_id"] == "R1"
    assert rejection["reasons"] == "unparseable;unknown_cohort"
    raw = json.loads(rejection["raw"])
    assert raw["n_patients"] == " １，２ "
    assert raw["share_a"] == 'say "hi"\n'
    assert "share_b" not in raw  # a column the row's file does not have
    assert list(raw)[:3] == ["response_id", "respondent_key", "disease"]


def test_inputs_are_not_mutated() -> None:
    export = make_export({"n_patients": "１，２００"}, {"attention_check": "1"})
    before = export.responses.copy()
    cleanse(export, CleanseRules(), KEY)
    pd.testing.assert_frame_equal(export.responses, before)


def test_missing_response_column_is_an_input_error() -> None:
    export = make_export({})
    export.responses = export.responses.drop(columns=["attention_check"])
    with pytest.raises(InputError, match="attention_check"):
        cleanse(export, CleanseRules(), KEY)


# --- conservation ---------------------------------------------------------------------------


def assert_conserved(export: RawExport, result: Any) -> None:
    raw = set(zip(export.responses["source_file"], export.responses["source_row"], strict=True))
    kept = list(zip(result.cleansed["source_file"], result.cleansed["source_row"], strict=True))
    dropped = list(
        zip(result.rejections["source_file"], result.rejections["source_row"], strict=True)
    )
    assert len(kept) + len(dropped) == len(export.responses)
    assert set(kept).isdisjoint(dropped)
    assert set(kept) | set(dropped) == raw
    assert result.summary["raw_rows"] == len(export.responses)
    assert result.summary["cleansed_rows"] == len(kept)
    assert result.summary["rejected_rows"] == len(dropped)


def test_rows_are_conserved_on_random_mixes() -> None:
    rng = np.random.default_rng(7)
    options = {
        "respondent_id": ["D1", "D2", "", "Ｄ１"],
        "disease": ["diabetes", "asthma", "gout", ""],
        "n_patients": ["35", "abc", "20000", "", "１，２００"],
        "submitted_at": ["2024/06/03 10:10:00", "2024/06/03 10:00:30", "bad", ""],
        "attention_check": ["3", "1"],
        "share_a": ["60", "", "x", "120"],
    }
    for _ in range(20):
        changes = [{k: v[rng.integers(len(v))] for k, v in options.items()} for _ in range(30)]
        export = make_export(*changes)
        assert_conserved(export, cleanse(export, CleanseRules(), KEY))


def test_sample_export_is_conserved_and_shows_every_reason(tmp_path: Path) -> None:
    generate(tmp_path, respondents=1500, seed=3)
    export = read_raw_export(tmp_path)
    result = cleanse(export, CleanseRules(), KEY)
    assert_conserved(export, result)
    counts = result.summary["rejections_by_reason"]
    assert all(counts[reason] > 0 for reason in REASONS), counts
    for reasons in result.rejections["reasons"]:
        parts = reasons.split(";")
        assert parts == sorted(parts, key=REASONS.index)
