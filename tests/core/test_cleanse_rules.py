"""One test per cleansing rule (``pipeline.core.cleanse.rules``), on parsed columns, and
the chunk-by-chunk paths against the whole-column ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from pipeline.core import rawdata
from pipeline.core.cleanse import CleanseRules, cleanse, parse_timestamps, rules
from pipeline.core.cleanse.respondents import Groups, Respondents
from pipeline.core.cleanse.values import Numbers, Shares, Times, coded
from pipeline.core.rawdata import RawExport, normalize_text, parse_number_cells, read_raw_export
from pipeline.sampledata import generate

RULES = CleanseRules()
KEY = b"test-key-not-a-secret"


def text(*values: str | None) -> pa.ChunkedArray:
    return pa.chunked_array([pa.array(values, pa.large_string())])


def numbers(*values: str | None) -> Numbers:
    return Numbers.parse(text(*values))


def times(*values: str | None) -> Times:
    return Times(*parse_timestamps(text(*values)))


def no_shares(n: int) -> Shares:
    return Shares.combine([], n)


def test_missing_required_marks_a_row_missing_any_required_column() -> None:
    present = {name: np.array([True, True, True]) for name in rules.REQUIRED_COLUMNS}
    present["n_patients"] = np.array([True, False, True])
    present["submitted_at"] = np.array([True, True, False])
    assert rules.missing_required(present).tolist() == [False, True, True]


def test_unparseable_marks_bad_numbers_fractions_bad_times_and_bad_shares() -> None:
    patients = numbers("12", "1.5", "x", "12", "12", "")
    started = times(*["2024-06-03T10:00:00"] * 3, "2024-02-30T10:00:00", "", "")
    submitted = times(*["2024-06-03T10:10:00"] * 6)
    shares = Shares.combine([numbers("", "", "", "", "abc", "")], 6)
    got = rules.unparseable(patients, started, submitted, shares)
    assert got.tolist() == [False, True, True, True, True, False]


def test_unknown_cohort_needs_a_disease_that_names_no_cohort() -> None:
    disease = coded(text("diabetes", "flu", "", None))
    assert rules.unknown_cohort(disease, np.array([0, -1, -1, -1])).tolist() == [
        False,
        True,
        False,
        False,
    ]


def test_out_of_range_checks_patients_and_every_share() -> None:
    patients = numbers("0", "10001", "-1", "5", "5")
    shares = Shares.combine([numbers("", "", "", "101", "100"), numbers("", "", "", "", "-0.5")], 5)
    assert rules.out_of_range(patients, shares, RULES).tolist() == [
        False,
        True,
        True,
        True,
        True,
    ]


def test_shares_not_100_counts_missing_as_zero_and_skips_unknown_sums() -> None:
    shares = Shares.combine(
        [numbers("60", "60", "99.5", "", "x"), numbers("40", "", "", "", "40")], 5
    )
    assert rules.shares_not_100(shares, RULES).tolist() == [False, True, False, True, False]


def test_speeder_needs_both_times_and_a_short_duration() -> None:
    started = times("2024-06-03T10:00:00", "2024-06-03T10:00:00", "", "2024-06-03T10:00:00")
    submitted = times("2024-06-03T10:01:59", "2024-06-03T10:02:00", "2024-06-03T10:00:01", "x")
    assert rules.speeder(started, submitted, RULES).tolist() == [True, False, False, False]


def test_attention_failed_compares_normalised_and_fails_missing_answers() -> None:
    answers = coded(text("3", "３", " 3 ", "2", "", None))
    got = rules.attention_failed(answers, RULES)
    assert got.tolist() == [False, False, False, True, True, True]


def test_duplicate_keeps_the_latest_eligible_submission_per_respondent_and_cohort() -> None:
    first = np.array([1, 1, 1, 2, 1], dtype=np.uint64)
    respondents = Respondents(np.ones(5, dtype=bool), first, np.zeros(5, dtype=np.uint64))
    groups = Groups(respondents, np.array([0, 0, 0, 0, 1]))
    submitted = Times(np.array([5, 9, 7, 1, 1]), np.ones(5, bool), np.ones(5, bool))
    eligible = np.array([True, True, False, True, True])  # row 2 fails another rule
    assert rules.duplicate(groups, eligible, submitted).tolist() == [
        True,
        False,
        False,
        False,
        False,
    ]


def test_reason_bits_follow_the_order_of_reasons() -> None:
    flags = {reason: np.array([False, False]) for reason in rules.REASONS}
    flags["unparseable"] = np.array([True, False])
    flags["duplicate"] = np.array([False, True])
    assert rules.reason_bits(flags).tolist() == [2, 128]


# --- chunk by chunk = the whole column; ASCII fast paths = the slow paths -------------------

MIXED = [
    "12",
    "１２",
    " 1,200 ",
    "１，２００",
    "",
    None,
    "x",
    "3.5",
    "1 200",
    "１２３４５６７８９",
    "0.25",
    "12345678",
]


def chunked(values: list[str | None], size: int) -> pa.ChunkedArray:
    pieces = [values[i : i + size] for i in range(0, len(values), size)]
    return pa.chunked_array([pa.array(p, pa.large_string()) for p in pieces], pa.large_string())


def cells(values: pa.Array | pa.ChunkedArray) -> tuple[dict[int, float], list[int]]:
    """``parse_number_cells`` as {row: number} and the sorted bad rows (its order is free)."""
    rows, found, bad = parse_number_cells(values)
    return dict(zip(rows.tolist(), found.tolist(), strict=True)), sorted(bad.tolist())


@pytest.mark.parametrize("size", [1, 2, 5])
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "mostly-empty"])
def test_number_cells_of_chunks_are_those_of_the_whole_column(size: int, sparse: bool) -> None:
    values = [v for value in MIXED for v in ([value, "", "", None] if sparse else [value])]
    whole = cells(pa.array(values, pa.large_string()))
    assert whole[0][values.index(" 1,200 ")] == 1200 and values.index("x") in whole[1]
    assert cells(chunked(values, size)) == whole


def test_ascii_and_full_width_numbers_parse_alike() -> None:
    ascii_values = ["12", "1,200", "3.5", "12345678", "0", "999"]
    wide = [v.translate({c: c + 0xFEE0 for c in range(0x21, 0x7F)}) for v in ascii_values]
    assert wide[1] == "１，２００"
    fast = cells(pa.array(ascii_values, pa.large_string()))
    assert cells(pa.array(wide, pa.large_string())) == fast
    assert fast == ({0: 12, 1: 1200, 2: 3.5, 3: 12345678, 4: 0, 5: 999}, [])


TIMES = [
    "2024-06-03T10:00:00",
    "２０２４-06-03T10:00:00",
    "2024/6/3 9:05:00",
    "2024-06-03T10:00:00+0100",
    " 2024-06-03 10:00:00Z ",
    "",
    None,
    "2024-02-30T10:00:00",
    "2024-06-03T10:00:00.123",
]


@pytest.mark.parametrize("size", [1, 4])
def test_timestamps_of_chunks_are_those_of_the_whole_column(size: int) -> None:
    whole = parse_timestamps(pa.array(TIMES, pa.large_string()))
    parts = parse_timestamps(chunked(TIMES, size))
    for got, expected in zip(parts, whole, strict=True):
        assert got.tolist() == expected.tolist()


def test_full_width_timestamps_parse_as_their_ascii_form() -> None:
    ascii_values = ["2024-06-03T10:00:00", "2024/06/03 10:00:00+09:00", "2024-06-03T01:00:00Z"]
    wide = [v.translate({c: c + 0xFEE0 for c in range(0x21, 0x7F)}) for v in ascii_values]
    fast = parse_timestamps(pa.array(ascii_values, pa.large_string()))
    slow = parse_timestamps(pa.array(wide, pa.large_string()))
    for got, expected in zip(slow, fast, strict=True):
        assert got.tolist() == expected.tolist()


def test_take_rows_takes_across_chunks_and_slices() -> None:
    values = chunked([f"v{i}" for i in range(10)], 3)
    rows = np.array([0, 2, 3, 8, 9])
    assert rawdata.take_rows(values, rows).to_pylist() == ["v0", "v2", "v3", "v8", "v9"]
    assert rawdata.take_rows(values, np.zeros(0, dtype=np.int64)).to_pylist() == []
    sliced = pa.array([f"v{i}" for i in range(10)], pa.large_string()).slice(4)
    assert rawdata.take_rows(sliced, np.array([0, 5])).to_pylist() == ["v4", "v9"]


def test_take_table_rows_takes_across_unaligned_chunks() -> None:
    table = pa.table(
        {
            "a": chunked([f"a{i}" for i in range(10)], 3),
            "b": chunked([f"b{i}" for i in range(10)], 4),
        }
    )
    taken = rawdata.take_table_rows(table, np.array([1, 3, 4, 9]))
    assert taken.column("a").to_pylist() == ["a1", "a3", "a4", "a9"]
    assert taken.column("b").to_pylist() == ["b1", "b3", "b4", "b9"]
    assert taken.column("a").num_chunks == 1
    assert rawdata.take_table_rows(table, np.zeros(0, dtype=np.int64)).num_rows == 0


def test_normalize_text_leaves_ascii_as_is_and_normalises_the_rest() -> None:
    values = ["abc", " ａｂｃ ", "", None, "x y", "ｶﾅ"]
    got = normalize_text(pa.array(values, pa.large_string())).to_pylist()
    assert got == ["abc", "abc", None, None, "x y", "カナ"]


def test_cleansing_a_chunked_frame_equals_cleansing_one_chunk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    generate(tmp_path, respondents=600, seed=5)
    monkeypatch.setattr(rawdata.parsing, "_BLOCK_SIZE", 1 << 12)  # many small chunks
    export = read_raw_export(tmp_path)
    assert export.responses["response_id"].array._pa_array.num_chunks > 3
    joined = RawExport(
        pd.DataFrame(
            {
                name: pd.Series(column.to_numpy(), dtype=column.dtype)
                for name, column in export.responses.items()
            }
        ),
        export.cohorts,
        export.frame,
        export.share_columns,
        export.files,
    )
    assert joined.responses["response_id"].array._pa_array.num_chunks == 1
    one, other = cleanse(export, RULES, KEY), cleanse(joined, RULES, KEY)
    pd.testing.assert_frame_equal(one.cleansed, other.cleansed)
    pd.testing.assert_frame_equal(one.rejections, other.rejections)
    assert one.summary == other.summary
    assert one.summary["raw_rows"] == len(export.responses)
