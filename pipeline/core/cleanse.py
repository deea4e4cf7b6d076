"""Cleansing rules (DESIGN.md, "Cleansing rules"): pure, vectorised functions.

``cleanse`` splits a ``RawExport``'s response rows into cleansed rows and rejections;
every raw row ends in exactly one of them. It reads no configuration and no files, and
never mutates its inputs. Work is done column-wise with pyarrow compute and numpy; Python
only touches distinct values (NFKC of non-ASCII text, the keyed hash of each respondent).

Interpretation, where the contract leaves room:

- Every value is NFKC-normalised and stripped; an empty result is missing. Numbers may
  carry thousands separators in groups of three and spaces (``１，２００`` → 1200);
  ``n_patients`` must be a whole number. Anything else present but not parseable is
  ``unparseable``.
- Timestamps: ``YYYY-MM-DD[T ]HH:MM[:SS[.fraction]]`` or the same with ``/``, with an
  optional offset ``Z``, ``±HH``, ``±HHMM`` or ``±HH:MM``; no offset means JST (+09:00).
  Month, day and hour may have one digit (``2024/6/3 9:05:00``, as Excel writes them).
  Stored in UTC at microsecond resolution.
- Disease codes are compared (and reported) NFKC-normalised, stripped and lower-cased,
  exactly as cohort codes are read.
- Shares: a missing share counts as 0 in the sum; when every share is missing the sum is
  0, so the row is ``shares_not_100``. When a share is unparseable the sum is unknown
  and only ``unparseable`` applies. In the cleansed rows a missing share stays missing
  (NaN), so that "not asked" differs from an explicit 0.
- ``speeder`` needs both timestamps; ``attention_failed`` applies when the check is
  missing too.
- ``duplicate``: among the rows that pass every other rule, the one with the latest
  ``submitted_at`` per respondent and disease is kept (a tie goes to the row that comes
  later in the export); rows failing other rules take no part.
- ``respondent_key`` is HMAC-SHA256 of the NFKC-normalised, stripped respondent id under
  the given key, as the first 32 hex digits (128 bits). In a rejection's ``raw`` JSON the
  ``respondent_id`` entry is replaced by ``respondent_key`` with that hash (``""`` when
  the id is empty), so raw respondent ids never leave cleansing.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.core.rawdata import (
    RESPONSE_COLUMNS,
    SHARE_PREFIX,
    RawExport,
    as_text,
    empty_to_null,
    normalize_text,
    parse_number_cells,
    string_buffers,
    valid_mask,
)
from pipeline.errors import ConfigError, InputError

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
TIMESTAMP_TYPE = pa.timestamp("us", tz="UTC")

_TEXT_COLUMNS = (
    "response_id",
    "respondent_id",
    "disease",
    "specialty",
    "region",
    "facility_type",
    "attention_check",
)
_BIT = {reason: np.uint8(1 << i) for i, reason in enumerate(REASONS)}
_REASON_TEXT = np.array(
    [";".join(r for i, r in enumerate(REASONS) if mask >> i & 1) for mask in range(256)],
    dtype=object,
)
_JST_SECONDS = 9 * 3600
_BAD_OFFSET = np.iinfo(np.int64).min
_TS_FULL = (
    r"^(?P<year>[0-9]{4})[-/](?P<month>[0-9]{1,2})[-/](?P<day>[0-9]{1,2})[T ]"
    r"(?P<hour>[0-9]{1,2}):(?P<minute>[0-9]{2})"
    r"(?::(?P<second>[0-9]{2})(?:[.,](?P<fraction>[0-9]{1,9}))?)?"
    r" ?(?P<zone>[Zz]|[+-][0-9]{2}(?::?[0-9]{2})?)?$"
)
# Byte columns of YYYY-MM-DDTHH:MM:SS, the layout nearly every timestamp has.
_TS_FIELDS = (
    ("y", (0, 1, 2, 3)),
    ("mo", (5, 6)),
    ("d", (8, 9)),
    ("h", (11, 12)),
    ("mi", (14, 15)),
    ("s", (17, 18)),
)
_TS_DIGITS = [c for _, cols in _TS_FIELDS for c in cols]


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


@dataclass
class _Shares:
    """Parsed share cells: per column the rows holding a number and the numbers."""

    rows: list[np.ndarray]
    numbers: list[np.ndarray]
    total: np.ndarray  # per row, missing = 0
    bad: np.ndarray  # rows with an unparseable share
    out_of_range: np.ndarray  # rows with a share outside the bounds


def cleanse(export: RawExport, rules: CleanseRules, key: bytes) -> CleanseResult:
    """Apply the cleansing rules to ``export.responses`` (see the module docstring).

    Reads ``export.responses``, ``export.cohorts`` and ``export.share_columns``; ``key``
    is the secret for ``respondent_key`` (from configuration, never the repository).
    Returns the cleansed rows, the rejections with every reason that applies, and a
    summary. Raises ``ConfigError`` for an empty key and ``InputError`` when the responses
    lack a required column.
    """
    if not key:
        raise ConfigError("the respondent hashing key is empty: set it in the environment")
    df = export.responses
    absent = [c for c in (*RESPONSE_COLUMNS, *SOURCE_COLUMNS) if c not in df.columns]
    if absent:
        raise InputError(f"the responses lack the column(s) {', '.join(absent)}")
    share_columns = [c for c in export.share_columns if c.startswith(SHARE_PREFIX)]
    n = len(df)
    raw = {name: as_text(df[name]) for name in df.columns if name not in SOURCE_COLUMNS}
    text = {name: normalize_text(raw[name]) for name in _TEXT_COLUMNS}
    flags = {reason: np.zeros(n, dtype=bool) for reason in REASONS}

    disease = pc.utf8_lower(text["disease"])
    codes = pa.array(export.cohorts["code"].astype(str).tolist(), pa.large_string())
    cohort_index = pc.index_in(disease, value_set=codes)
    flags["unknown_cohort"] = valid_mask(disease) & ~valid_mask(cohort_index)

    rows, numbers, bad_rows = parse_number_cells(raw["n_patients"])
    whole = np.floor(numbers) == numbers
    flags["unparseable"][bad_rows] = True
    flags["unparseable"][rows[~whole]] = True
    n_patients = np.zeros(n, dtype=np.int64)
    n_patients[rows[whole]] = np.clip(numbers[whole], -(2**62), 2**62).astype(np.int64)
    has_patients = np.zeros(n, dtype=bool)
    has_patients[rows] = True
    has_patients[bad_rows] = True
    flags["out_of_range"][
        rows[(numbers < rules.n_patients_min) | (numbers > rules.n_patients_max)]
    ] = True

    shares = _shares(raw, share_columns, rules, n)
    flags["unparseable"] |= shares.bad
    flags["out_of_range"] |= shares.out_of_range
    flags["shares_not_100"] = ~shares.bad & (
        np.abs(shares.total - 100.0) > rules.share_sum_tolerance + 1e-9
    )

    started, started_ok, started_present = parse_timestamps(raw["started_at"])
    submitted, submitted_ok, submitted_present = parse_timestamps(raw["submitted_at"])
    flags["unparseable"] |= (started_present & ~started_ok) | (submitted_present & ~submitted_ok)
    flags["speeder"] = (
        started_ok & submitted_ok & (submitted - started < rules.min_duration_seconds * 1e6)
    )

    expected = unicodedata.normalize("NFKC", str(rules.attention_expected)).strip()
    flags["attention_failed"] = ~pc.fill_null(
        pc.equal(text["attention_check"], expected), False
    ).to_numpy(zero_copy_only=False)

    present = {name: valid_mask(text[name]) for name in ("response_id", "respondent_id")}
    present.update(disease=valid_mask(disease), n_patients=has_patients)
    present["submitted_at"] = submitted_present
    for name in REQUIRED_COLUMNS:
        flags["missing_required"] |= ~present[name]

    mask = np.zeros(n, dtype=np.uint8)
    for reason in REASONS[:-1]:
        mask[flags[reason]] |= _BIT[reason]
    respondents = text["respondent_id"].dictionary_encode()
    flags["duplicate"] = _superseded(
        mask == 0,
        _indices(respondents.indices),
        _indices(cohort_index),
        len(codes),
        submitted,
    )
    mask[flags["duplicate"]] |= _BIT["duplicate"]
    hashes = _keyed_hashes(respondents.dictionary, key)
    respondent_index = respondents.indices

    kept = np.flatnonzero(mask == 0)
    dropped = np.flatnonzero(mask != 0)
    source_file = as_text(df["source_file"])
    source_row = df["source_row"].to_numpy(dtype=np.int64)

    take = pa.array(kept)
    cleansed_cols: dict[str, Any] = {
        "cohort": disease.take(take),
        "response_id": text["response_id"].take(take),
        "respondent_key": hashes.take(respondent_index.take(take)),
        **{c: text[c].take(take) for c in ("specialty", "region", "facility_type")},
        "started_at": _timestamps(started[kept], started_ok[kept]),
        "submitted_at": _timestamps(submitted[kept], submitted_ok[kept]),
        "n_patients": pa.array(n_patients[kept]),
        "attention_check": text["attention_check"].take(take),
    }
    position = np.full(n, -1, dtype=np.int64)
    position[kept] = np.arange(len(kept))
    for name, cell_rows, cell_numbers in zip(
        share_columns, shares.rows, shares.numbers, strict=True
    ):
        column = np.full(len(kept), np.nan)
        at = position[cell_rows]
        column[at[at >= 0]] = cell_numbers[at >= 0]
        cleansed_cols[name] = pa.array(column)  # NaN stays NaN: pandas' missing float
    cleansed_cols["source_file"] = source_file.take(take)
    cleansed_cols["source_row"] = pa.array(source_row[kept])
    cleansed = pa.table(cleansed_cols).to_pandas(split_blocks=True)

    take = pa.array(dropped)
    rejections = pa.table(
        {
            "cohort": disease.take(take),
            "response_id": text["response_id"].take(take),
            "reasons": pa.array(_REASON_TEXT[mask[dropped]], pa.large_string()),
            "source_file": source_file.take(take),
            "source_row": pa.array(source_row[dropped]),
            "raw": _raw_json(raw, dropped, hashes.take(respondent_index.take(take))),
        }
    ).to_pandas(split_blocks=True)

    summary = _summary(export, mask, flags, cohort_index, shares, share_columns)
    return CleanseResult(cleansed=cleansed, rejections=rejections, summary=summary)


def parse_timestamps(
    values: pd.Series | pa.Array | pa.ChunkedArray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parse timestamp text as delivered (see the module docstring) to UTC.

    Returns ``(microseconds since the epoch as int64, ok, present)``: ``present`` marks the
    non-empty values (after normalisation), ``ok`` those that parse, including a valid
    date (2024-02-30 does not); where ``ok`` is false the number is meaningless.
    """
    text = as_text(values)
    n = len(text)
    offsets, _ = string_buffers(text)
    present = (offsets[1:] != offsets[:-1]) & valid_mask(text)
    filled = np.flatnonzero(present)
    lengths = offsets[filled + 1] - offsets[filled]
    found: list[dict[str, np.ndarray]] = []

    # The usual layouts are read straight from the bytes: rows of one length, taken
    # together, form a rows x length byte matrix. The regex below handles the rest.
    for width in (19, 20, 22, 24, 25):
        rows = filled[lengths == width]
        if not len(rows):
            continue
        starts, taken = string_buffers(text.take(pa.array(rows)))
        m = taken[starts[0] : starts[0] + len(rows) * width].reshape(len(rows), width)
        m = np.asfortranarray(m)
        good, zone = _fixed_layout(m)
        if not good.all():
            rows, m, zone = rows[good], m[good], zone[good]
        fields = {name: _number(m, cols) for name, cols in _TS_FIELDS}
        found.append({"rows": rows, **fields, "us": np.zeros(len(rows), np.int64), "zone": zone})

    parsed = np.zeros(n, dtype=bool)
    for item in found:
        parsed[item["rows"]] = True
    rest = np.flatnonzero(present & ~parsed)
    if len(rest):
        normalised = normalize_text(text.take(pa.array(rest)))
        present[rest[~valid_mask(normalised)]] = False
        groups = pc.extract_regex(normalised, _TS_FULL)
        matched = valid_mask(groups)
        groups = groups.filter(pa.array(matched))
        fraction = pc.utf8_slice_codeunits(pc.utf8_rpad(groups.field("fraction"), 6, "0"), 0, 6)
        found.append(
            {
                "rows": rest[matched],
                **{name: _ints(groups.field(field)) for name, field in _TS_GROUPS},
                "us": _ints(fraction),
                "zone": _zone_offsets(groups.field("zone")),
            }
        )

    result = np.zeros(n, dtype=np.int64)
    ok = np.zeros(n, dtype=bool)
    if found:
        p = {k: np.concatenate([item[k] for item in found]) for k in found[0]}
        y, mo, d = p["y"], p["mo"], p["d"]
        leap = (y % 4 == 0) & ((y % 100 != 0) | (y % 400 == 0))
        month_days = _MONTH_DAYS[np.clip(mo, 0, 13)] + ((mo == 2) & leap)
        good = (mo >= 1) & (mo <= 12) & (d >= 1) & (d <= month_days)
        good &= (p["h"] <= 23) & (p["mi"] <= 59) & (p["s"] <= 59) & (p["zone"] != _BAD_OFFSET)
        seconds = _days_from_civil(y, mo, d) * 86400 + p["h"] * 3600 + p["mi"] * 60 + p["s"]
        result[p["rows"]] = (seconds - p["zone"]) * 1_000_000 + p["us"]
        ok[p["rows"]] = good
    return result, ok, present


_MONTH_DAYS = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31, 0], dtype=np.int64)
_TS_GROUPS = (
    ("y", "year"),
    ("mo", "month"),
    ("d", "day"),
    ("h", "hour"),
    ("mi", "minute"),
    ("s", "second"),
)


def _days_from_civil(y: np.ndarray, m: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 of proleptic Gregorian dates (H. Hinnant's algorithm)."""
    y = y - (m <= 2)
    era = np.floor_divide(y, 400)
    year_of_era = y - era * 400
    day_of_year = (153 * (m + np.where(m > 2, -3, 9)) + 2) // 5 + d - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146097 + day_of_era - 719468


def _fixed_layout(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of a byte matrix that are YYYY-MM-DDTHH:MM:SS[zone]; zone offsets in seconds."""
    width = m.shape[1]
    good = np.ones(len(m), dtype=bool)
    for c in _TS_DIGITS:
        good &= m[:, c] - np.uint8(48) <= 9
    good &= ((m[:, 4] == ord("-")) | (m[:, 4] == ord("/"))) & (m[:, 7] == m[:, 4])
    good &= (m[:, 10] == ord("T")) | (m[:, 10] == ord(" "))
    good &= (m[:, 13] == ord(":")) & (m[:, 16] == ord(":"))
    if width == 19:
        return good, np.full(len(m), _JST_SECONDS, dtype=np.int64)
    if width == 20:
        return good & ((m[:, 19] == ord("Z")) | (m[:, 19] == ord("z"))), np.zeros(len(m), np.int64)
    minute_cols = {22: (), 24: (22, 23), 25: (23, 24)}.get(width)
    if minute_cols is None:
        return np.zeros(len(m), dtype=bool), np.zeros(len(m), np.int64)
    good &= (m[:, 19] == ord("+")) | (m[:, 19] == ord("-"))
    for c in (20, 21, *minute_cols):
        good &= m[:, c] - np.uint8(48) <= 9
    if width == 25:
        good &= m[:, 22] == ord(":")
    hours = _number(m, (20, 21))
    minutes = _number(m, minute_cols)
    good &= (hours <= 23) & (minutes <= 59)
    sign = np.where(m[:, 19] == ord("-"), -1, 1)
    return good, sign * (hours * 3600 + minutes * 60)


def _number(m: np.ndarray, columns: tuple[int, ...]) -> np.ndarray:
    """The decimal number written by ASCII digit bytes in ``columns`` of each row."""
    value = np.zeros(len(m), dtype=np.int64)
    for c in columns:
        value = value * 10 + (m[:, c] - np.uint8(48))
    return value


def _zone_offsets(zones: pa.Array) -> np.ndarray:
    """Seconds east of UTC for each zone text (empty or null = JST); invalid → _BAD_OFFSET."""
    encoded = pc.fill_null(zones, "").dictionary_encode()
    table = np.array([_zone_offset(z) for z in encoded.dictionary.to_pylist()], dtype=np.int64)
    return table[_indices(encoded.indices)] if len(table) else np.zeros(0, dtype=np.int64)


def _zone_offset(zone: str) -> int:
    if zone == "":
        return _JST_SECONDS
    if zone in ("Z", "z"):
        return 0
    digits = zone[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:] or 0)
    if hours > 23 or minutes > 59:
        return int(_BAD_OFFSET)
    return (1 if zone[0] == "+" else -1) * (hours * 3600 + minutes * 60)


def _lit(text: str) -> pa.Scalar:
    return pa.scalar(text, pa.large_string())


def _indices(values: pa.Array) -> np.ndarray:
    """Integer array as int64 numpy, null → -1."""
    return pc.fill_null(values, -1).to_numpy(zero_copy_only=False).astype(np.int64)


def _ints(values: pa.Array) -> np.ndarray:
    """Digit text as int64 numpy; empty (an optional regex group not taken) → 0."""
    numbers = pc.cast(empty_to_null(as_text(values)), pa.int64())
    return pc.fill_null(numbers, 0).to_numpy(zero_copy_only=False)


def _timestamps(us: np.ndarray, ok: np.ndarray) -> pa.Array:
    return pa.array(us, type=pa.int64(), mask=~ok).cast(TIMESTAMP_TYPE)


def _shares(
    raw: dict[str, pa.Array], share_columns: list[str], rules: CleanseRules, n: int
) -> _Shares:
    """Parse every share column; only the cells that hold something cost anything."""
    out = _Shares([], [], np.zeros(n), np.zeros(n, dtype=bool), np.zeros(n, dtype=bool))
    for name in share_columns:
        rows, numbers, bad_rows = parse_number_cells(raw[name])
        out.rows.append(rows)
        out.numbers.append(numbers)
        out.total[rows] += numbers
        out.bad[bad_rows] = True
        out.out_of_range[rows[(numbers < rules.share_min) | (numbers > rules.share_max)]] = True
    return out


def _superseded(
    candidates: np.ndarray,
    respondent: np.ndarray,
    cohort: np.ndarray,
    n_cohorts: int,
    submitted: np.ndarray,
) -> np.ndarray:
    """Candidate rows that a later submission (same respondent and cohort) supersedes."""
    out = np.zeros(len(candidates), dtype=bool)
    idx = np.flatnonzero(candidates & (respondent >= 0) & (cohort >= 0))
    group = respondent[idx] * (n_cohorts + 1) + cohort[idx]
    if len(group) and group.max() < 8 * len(group):
        counts = np.bincount(group)[group]
    else:
        _, inverse, counts = np.unique(group, return_inverse=True, return_counts=True)
        counts = counts[inverse]
    repeated = counts > 1  # only the few repeated groups get sorted
    idx, group = idx[repeated], group[repeated]
    if len(idx) == 0:
        return out
    order = np.lexsort((idx, submitted[idx], group))
    group = group[order]
    out[idx[order[:-1][group[1:] == group[:-1]]]] = True
    return out


def _keyed_hashes(ids: pa.Array, key: bytes) -> pa.Array:
    """HMAC-SHA256(key, id) as hex, first KEY_HEX_DIGITS digits, for each distinct id."""
    # RFC 2104 with the padded key's inner and outer states computed once, then copied:
    # about twice as fast as hmac.digest per value, and this loop is a cost that counts.
    if len(key) > 64:
        key = hashlib.sha256(key).digest()
    key = key.ljust(64, b"\0")
    inner_copy = hashlib.sha256(bytes(b ^ 0x36 for b in key)).copy
    outer_copy = hashlib.sha256(bytes(b ^ 0x5C for b in key)).copy
    digests = []
    append = digests.append
    for value in ids.cast(pa.large_binary()).to_pylist():
        inner = inner_copy()
        inner.update(value)
        outer = outer_copy()
        outer.update(inner.digest())
        append(outer.digest())
    if not digests:
        return pa.array([], pa.large_string())
    hex_digits = np.frombuffer(b"".join(digests).hex().encode("ascii"), dtype=np.uint8)
    data = np.ascontiguousarray(hex_digits.reshape(len(digests), 64)[:, :KEY_HEX_DIGITS])
    offsets = np.arange(0, data.size + 1, KEY_HEX_DIGITS, dtype=np.int64)
    return pa.Array.from_buffers(
        pa.large_string(), len(digests), [None, pa.py_buffer(offsets), pa.py_buffer(data)]
    )


_JSON_SPECIAL = np.zeros(256, dtype=bool)
_JSON_SPECIAL[[*range(0x20), ord('"'), ord("\\")]] = True


def _json_escaped(values: pa.Array) -> pa.Array:
    """Values escaped for the inside of a JSON string (nulls kept), UTF-8 kept as is."""
    _, data = string_buffers(values)
    if not _JSON_SPECIAL[data].any():  # the usual case, checked on the bytes at once
        return values
    escaped = values
    for char, escape in (("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t")):
        escaped = pc.replace_substring(escaped, char, escape)
    control = pc.fill_null(pc.match_substring_regex(values, r"[\x00-\x08\x0b\x0c\x0e-\x1f]"), False)
    if pc.any(control).as_py():  # rare: let json write the \u00XX escapes
        odd = [json.dumps(v, ensure_ascii=False)[1:-1] for v in values.filter(control).to_pylist()]
        escaped = pc.replace_with_mask(escaped, control, pa.array(odd, escaped.type))
    return escaped


def _raw_json(raw: dict[str, pa.Array], rows: np.ndarray, respondent_key: pa.Array) -> pa.Array:
    """The values of ``rows`` as delivered, as JSON objects of their own file's columns.

    ``respondent_key`` holds the keyed hash of each of ``rows`` (null for no id).

    A null cell means the row's file lacks that column (delivered empty cells are ``""``),
    so it is left out. ``respondent_id`` becomes ``respondent_key`` with the keyed hash.
    The first column (``response_id``, required in every file) opens each object.
    """
    if len(rows) == 0:
        return pa.array([], pa.large_string())
    take = pa.array(rows)
    parts: list[pa.Array | pa.Scalar] = []
    for name, column in raw.items():
        cells = column.take(take)
        if name == "respondent_id":
            name, cells = "respondent_key", pc.fill_null(respondent_key, _lit(""))
        key = json.dumps(name, ensure_ascii=False)
        cells = _json_escaped(cells)
        if not parts:
            parts += [_lit("{" + key + ':"'), pc.fill_null(cells, _lit("")), _lit('"')]
        elif cells.null_count:
            joined = pc.binary_join_element_wise(_lit("," + key + ':"'), cells, _lit('"'), _lit(""))
            parts.append(pc.fill_null(joined, _lit("")))
        else:
            parts += [_lit("," + key + ':"'), cells, _lit('"')]
    parts.append(_lit("}"))
    return pc.binary_join_element_wise(*parts, _lit(""))


def _summary(
    export: RawExport,
    mask: np.ndarray,
    flags: dict[str, np.ndarray],
    cohort_index: pa.Array,
    shares: _Shares,
    share_columns: list[str],
) -> dict[str, Any]:
    codes = export.cohorts["code"].astype(str).tolist()
    if "label" in export.cohorts:
        labels = export.cohorts["label"].fillna("").astype(str).tolist()
    else:
        labels = codes
    index = _indices(cohort_index)
    index[index < 0] = len(codes)
    kept = mask == 0
    counts_all = np.bincount(index, minlength=len(codes) + 1)
    counts_kept = np.bincount(index[kept], minlength=len(codes) + 1)
    answered = np.zeros((len(codes) + 1, len(share_columns)), dtype=bool)
    for j, rows in enumerate(shares.rows):
        answered[index[rows[kept[rows]]], j] = True
    cohorts = {
        code: {
            "label": labels[i],
            "cleansed": int(counts_kept[i]),
            "rejected": int(counts_all[i] - counts_kept[i]),
            "share_columns": [c for j, c in enumerate(share_columns) if answered[i, j]],
        }
        for i, code in enumerate(codes)
    }
    return {
        "raw_rows": len(mask),
        "cleansed_rows": int(kept.sum()),
        "rejected_rows": int(len(mask) - kept.sum()),
        "rejections_by_reason": {reason: int(flags[reason].sum()) for reason in REASONS},
        "cohorts": cohorts,
        "share_columns": list(share_columns),
    }
