"""Cleansing rules: one test per rule, normalisation, duplicates, conservation, privacy."""

from __future__ import annotations

import datetime as dt
import hmac
import json
import random
import re
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from pipeline.core import cleanse as cleansing
from pipeline.core.cleanse import (
    CLEANSED_COLUMNS,
    KEY_DERIVATION,
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


_M64 = (1 << 64) - 1


def _siphash24(key: bytes, message: bytes) -> int:
    """Reference SipHash-2-4 (Aumasson & Bernstein), written from the paper, 64-bit output."""

    def rotl(x: int, b: int) -> int:
        return ((x << b) | (x >> (64 - b))) & _M64

    k0, k1 = int.from_bytes(key[:8], "little"), int.from_bytes(key[8:16], "little")
    v = [k0 ^ 0x736F6D6570736575, k1 ^ 0x646F72616E646F6D]
    v += [k0 ^ 0x6C7967656E657261, k1 ^ 0x7465646279746573]

    def sipround() -> None:
        v[0] = (v[0] + v[1]) & _M64
        v[1] = rotl(v[1], 13) ^ v[0]
        v[0] = rotl(v[0], 32)
        v[2] = (v[2] + v[3]) & _M64
        v[3] = rotl(v[3], 16) ^ v[2]
        v[0] = (v[0] + v[3]) & _M64
        v[3] = rotl(v[3], 21) ^ v[0]
        v[2] = (v[2] + v[1]) & _M64
        v[1] = rotl(v[1], 17) ^ v[2]
        v[2] = rotl(v[2], 32)

    tail = len(message) % 8
    last = message[len(message) - tail :] + bytes(7 - tail) + bytes([len(message) & 0xFF])
    blocks = [message[i : i + 8] for i in range(0, len(message) - tail, 8)] + [last]
    for block in blocks:
        m = int.from_bytes(block, "little")
        v[3] ^= m
        sipround()
        sipround()
        v[0] ^= m
    v[2] ^= 0xFF
    for _ in range(4):
        sipround()
    return v[0] ^ v[1] ^ v[2] ^ v[3]


def _mix64(x: int) -> int:
    """The bijective finaliser pandas.util.hash_array applies to SipHash's output."""
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & _M64
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def expected_key(respondent_id: str, key: bytes = KEY) -> str:
    """respondent_key as the module docstring defines it, computed independently."""
    normalised = unicodedata.normalize("NFKC", respondent_id).strip().encode()
    derived = hmac.new(key, KEY_DERIVATION, "sha256").digest()
    return "".join(f"{_mix64(_siphash24(derived[i : i + 16], normalised)):016x}" for i in (0, 16))


def test_reference_siphash_matches_the_paper() -> None:
    # Appendix A of "SipHash: a fast short-input PRF": key 00..0f, message 00..0e
    assert _siphash24(bytes(range(16)), bytes(range(15))) == 0xA129CA6149BE45E5


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
        ("2024-06-03T10:00:00+09", "2024-06-03T01:00:00"),
        ("2024-06-03T01:00:00z", "2024-06-03T01:00:00"),
        ("2024/06/03T10:00:00", "2024-06-03T01:00:00"),
        ("2024-06-03 10:00:00 +09:00", "2024-06-03T01:00:00"),
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
        "2024-06-03T10:00:00+09:60",
        "2024-06-03T10:00:00+0960",
        "2024-06-03T10:00:00+9",
        "2024-06-03T10:00:00Q",
        "2024-06-03",
        "不明",
    ],
)
def test_timestamps_that_do_not_parse(text: str) -> None:
    _, ok, present = parse_timestamps(pa.array([text], pa.large_string()))
    assert present[0] and not ok[0]


_TIMESTAMP = re.compile(
    r"(\d{4})[-/](\d{1,2})[-/](\d{1,2})[T ](\d{1,2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?"
    r" ?([Zz]|[+-]\d{2}(?::?\d{2})?)?",
    re.ASCII,
)


def reference_timestamp(value: str) -> tuple[bool, bool, int]:
    """(present, ok, microseconds) of one timestamp by the module docstring, plainly."""
    text = unicodedata.normalize("NFKC", value).strip()
    found = _TIMESTAMP.fullmatch(text)
    if not text or not found:
        return bool(text), False, 0
    year, month, day, hour, minute, second, fraction, zone = found.groups()
    offset = 9 * 60
    if zone and zone not in "Zz":
        digits = zone[1:].replace(":", "")
        hours, minutes = int(digits[:2]), int(digits[2:] or 0)
        if hours > 23 or minutes > 59:
            return True, False, 0
        offset = (hours * 60 + minutes) * (1 if zone[0] == "+" else -1)
    elif zone:
        offset = 0
    try:
        local = dt.datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second or 0)
        )
    except ValueError:
        return True, False, 0
    utc = local.replace(tzinfo=dt.timezone(dt.timedelta(minutes=offset)))
    micros = (utc - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1)
    return True, True, micros + int((fraction or "0").ljust(6, "0")[:6])


def test_timestamps_match_a_plain_parser_on_random_text() -> None:
    rng = random.Random(11)
    base = dt.datetime(2024, 2, 26, 0, 0, 0)
    values = []
    for _ in range(20000):
        moment = base + dt.timedelta(seconds=rng.randrange(0, 40 * 86400))
        text = moment.strftime(rng.choice(["%Y-%m-%dT%H:%M:%S", "%Y/%m/%d %H:%M:%S"]))
        text += rng.choice(
            ["", "", "Z", "z", "+09:00", "+0900", "+09", "-05:30", "+23:59", " +09:00"]
        )
        if rng.random() < 0.3:  # damage: any character, anywhere
            at = rng.randrange(len(text))
            text = text[:at] + rng.choice("0123456789/-:T +Z.９　x") + text[at + 1 :]
        if rng.random() < 0.05:
            text = rng.choice(["", " ", "2024-02-30T10:00:00", "2024-06-03T10:00", "不明"])
        values.append(text)
    micros, ok, present = parse_timestamps(pa.array(values, pa.large_string()))
    for i, value in enumerate(values):
        expected_present, expected_ok, expected_micros = reference_timestamp(value)
        assert (bool(present[i]), bool(ok[i])) == (expected_present, expected_ok), repr(value)
        if expected_ok:
            assert micros[i] == expected_micros, repr(value)


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


def test_respondent_key_is_pinned() -> None:
    # Keys must not change between runs or library upgrades: cohorts of different run
    # dates are joined on them. A change here needs a migration plan, not a new value.
    export = make_export({"respondent_id": "D576277"}, {"respondent_id": "医師-０１"})
    keys = cleanse(export, CleanseRules(), b"pinned-key").cleansed["respondent_key"].tolist()
    assert keys == [expected_key("D576277", b"pinned-key"), expected_key("医師-01", b"pinned-key")]
    assert keys == ["ec2566f4d3779403506f3bde8808e249", "39bacc77e48715a6a551828400d13bfc"]


def test_distinct_ids_get_distinct_keys_and_duplicates_follow_the_key() -> None:
    ids = [f"D{i}" for i in range(2000)] + ["D7", "Ｄ７"]
    result = run(*({"respondent_id": i} for i in ids))
    keys = result.cleansed["respondent_key"]
    assert keys.str.fullmatch("[0-9a-f]{32}").all()
    assert keys.nunique() == 2000  # D7 answered three times: the last one is kept
    assert result.rejections["reasons"].tolist() == ["duplicate", "duplicate"]
    assert result.rejections["source_row"].tolist() == [2 + 7, 2 + 2000]


def test_duplicates_are_judged_on_the_whole_key() -> None:
    # two respondents whose keys share the first 64 bits are still two respondents
    first = np.array([7, 7, 7, 9], dtype=np.uint64)
    second = np.array([1, 2, 1, 1], dtype=np.uint64)
    respondents = cleansing.respondents.Respondents(np.ones(4, dtype=bool), first, second)
    groups = cleansing.respondents.Groups(respondents, np.zeros(4, dtype=np.int64))
    submitted = np.array([1, 2, 3, 4], dtype=np.int64)
    superseded = groups.superseded(np.ones(4, dtype=bool), submitted)
    assert superseded.tolist() == [True, False, False, False]


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


def assert_same_result(one: Any, other: Any) -> None:
    pd.testing.assert_frame_equal(one.cleansed, other.cleansed)
    pd.testing.assert_frame_equal(one.rejections, other.rejections)
    assert one.summary == other.summary


def test_the_result_does_not_depend_on_threads_or_shortcuts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    generate(tmp_path, respondents=800, seed=4)
    export = read_raw_export(tmp_path)
    result = cleanse(export, CleanseRules(), KEY)
    monkeypatch.setattr(cleansing, "_WORKERS", 1)  # one thread: the columns one by one
    assert_same_result(cleanse(export, CleanseRules(), KEY), result)
    monkeypatch.setattr(cleansing.values, "_FEW", 1)  # categories normalised as any text
    assert_same_result(cleanse(export, CleanseRules(), KEY), result)


def test_source_file_is_kept_however_the_files_interleave() -> None:
    export = make_export(*({"n_patients": "x" if i % 3 == 0 else "1"} for i in range(200)))
    names = [f"responses/{'ab'[i % 2]}.csv" for i in range(200)]  # a run per row
    export.responses["source_file"] = pd.array(names, dtype="str")
    result = cleanse(export, CleanseRules(), KEY)
    kept, dropped = result.cleansed, result.rejections
    assert kept["source_file"].tolist() == [names[r - 2] for r in kept["source_row"]]
    assert dropped["source_file"].tolist() == [names[r - 2] for r in dropped["source_row"]]


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
