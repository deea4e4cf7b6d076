"""Cleansing rules (DESIGN.md, "Cleansing rules"): pure, vectorised functions.

``cleanse`` splits a ``RawExport``'s response rows into cleansed rows and rejections;
every raw row ends in exactly one of them. It reads no configuration and no files, and
never mutates its inputs. Work is done column-wise with pyarrow compute and numpy, the
independent columns on a small thread pool (arrow and numpy release the GIL); Python
only touches distinct values (NFKC of non-ASCII text, time zone suffixes).

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
  later in the export); rows failing other rules take no part. Two rows are the same
  respondent when their ``respondent_key`` is the same.
- ``respondent_key`` (32 hex digits, 128 bits) is a keyed pseudonym of the NFKC-normalised,
  stripped respondent id ``m`` (its UTF-8 bytes): ``hex(H(k1, m)) + hex(H(k2, m))``, each
  half 64 bits big-endian, where ``H(k, m) = mix64(SipHash-2-4(k, m))`` is
  ``pandas.util.hash_array`` with a 16-byte ``hash_key`` (SipHash-2-4 is a keyed PRF with
  a 128-bit key, designed for short inputs; ``mix64`` is the fixed bijective finaliser
  pandas applies to its output) and ``k1 ‖ k2 = HMAC-SHA256(key, KEY_DERIVATION)``, so
  the two 128-bit SipHash keys look independent and random and do not give the configured
  secret away. Without the key a respondent_key reveals nothing about the id (PRF
  security; ids are low-entropy, so the key must stay secret, as with any keyed hash).
  Distinct ids get the same key with probability about n² / 2¹²⁹ for n distinct ids
  (≈ 10⁻²⁷ for a million), as for any 128-bit PRF. Chosen over HMAC-SHA256 per id
  because it runs in C over the whole column (a Python loop per id cost more than
  parsing the export), and kept deterministic across runs so that keys from different
  run dates join (keys made before this scheme, truncated HMAC-SHA256, differ from it).
  In a rejection's ``raw`` JSON the ``respondent_id`` entry is replaced by
  ``respondent_key`` with that hash (``""`` when the id is empty), so raw respondent ids
  never leave cleansing.
"""

from __future__ import annotations

import binascii
import hmac
import json
import re
import unicodedata
from concurrent.futures import Future, ThreadPoolExecutor
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
    as_chunked,
    as_text,
    empty_to_null,
    normalize_text,
    parse_number_cells,
    string_buffers,
    take_rows,
    text_chunks,
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
KEY_DERIVATION = b"pipeline respondent_key v2: two SipHash-2-4 keys"
TIMESTAMP_TYPE = pa.timestamp("us", tz="UTC")

_WORKERS = max(1, min(4, pa.cpu_count()))  # threads for the independent column work
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
# YYYY-MM-DDTHH:MM:SS (or / and space) with nothing, Z, ±HH, ±HHMM or ±HH:MM after it:
# the layouts nearly every timestamp has, read straight from the bytes.
_TS_PREFIX = 19
_TS_FAST_WIDTH = np.zeros(64, dtype=bool)
_TS_FAST_WIDTH[[19, 20, 22, 24, 25]] = True
_TS_DIGITS = (0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18)
_TS_ZONE = re.compile(rb"[Zz]|[+-][0-9]{2}(?::?[0-9]{2})?")


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
    # the columns as arrow chunks (zero-copy: never joined); each rule works chunk by chunk
    raw = {name: as_chunked(df[name]) for name in df.columns if name not in SOURCE_COLUMNS}
    codes = pa.array(export.cohorts["code"].astype(str).tolist(), pa.large_string())

    with ThreadPoolExecutor(max_workers=_WORKERS) as pool:
        # The columns are independent: the big pieces first, so that no worker idles long.
        # (A job waits only on one submitted before it: never on one that cannot start.)
        disease_job = pool.submit(_diseases, raw["disease"], codes)
        respondents_job = pool.submit(_respondents, raw["respondent_id"], key, disease_job)
        started_job = pool.submit(parse_timestamps, raw["started_at"])
        submitted_job = pool.submit(parse_timestamps, raw["submitted_at"])
        patients_job = pool.submit(parse_number_cells, raw["n_patients"])
        response_id_job = pool.submit(_normalized, raw["response_id"])
        coded_jobs = {
            name: pool.submit(_coded, raw[name])
            for name in ("attention_check", "specialty", "region", "facility_type")
        }
        share_jobs = [pool.submit(parse_number_cells, raw[name]) for name in share_columns]
        source_file_job = pool.submit(_Runs, as_chunked(df["source_file"]))

        flags = {reason: np.zeros(n, dtype=bool) for reason in REASONS}
        disease, cohort_index = disease_job.result()
        flags["unknown_cohort"] = disease.present & (cohort_index < 0)
        respondents, groups = respondents_job.result()

        rows, numbers, bad_rows = patients_job.result()
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

        started, started_ok, started_present = started_job.result()
        submitted, submitted_ok, submitted_present = submitted_job.result()
        flags["unparseable"] |= (started_present & ~started_ok) | (
            submitted_present & ~submitted_ok
        )
        flags["speeder"] = (
            started_ok & submitted_ok & (submitted - started < rules.min_duration_seconds * 1e6)
        )

        coded = {name: job.result() for name, job in coded_jobs.items()}
        expected = unicodedata.normalize("NFKC", str(rules.attention_expected)).strip()
        flags["attention_failed"] = ~coded["attention_check"].equals(expected)
        response_id = response_id_job.result()

        shares = _shares([job.result() for job in share_jobs], rules, n)
        flags["unparseable"] |= shares.bad
        flags["out_of_range"] |= shares.out_of_range
        flags["shares_not_100"] = ~shares.bad & (
            np.abs(shares.total - 100.0) > rules.share_sum_tolerance + 1e-9
        )

        present = {
            "response_id": valid_mask(response_id),
            "respondent_id": respondents.present,
            "disease": disease.present,
            "n_patients": has_patients,
            "submitted_at": submitted_present,
        }
        for name in REQUIRED_COLUMNS:
            flags["missing_required"] |= ~present[name]

        mask = np.zeros(n, dtype=np.uint8)  # one bit per reason, in REASONS order
        for bit, reason in enumerate(REASONS[:-1]):
            mask |= flags[reason].view(np.uint8) << bit
        flags["duplicate"] = groups.superseded(mask == 0, submitted)
        mask |= flags["duplicate"].view(np.uint8) << (len(REASONS) - 1)

        kept = np.flatnonzero(mask == 0)
        dropped = np.flatnonzero(mask != 0)
        source_file = source_file_job.result()
        source_row = df["source_row"].to_numpy(dtype=np.int64)

        # The rejections take longest (a JSON object per row): they start first, in halves.
        rejected = [
            pool.submit(
                _rejections,
                raw,
                disease,
                response_id,
                respondents,
                mask,
                part,
                source_file,
                source_row,
            )
            for part in np.array_split(dropped, 2)
        ]
        summarised = pool.submit(_summary, export, mask, flags, cohort_index, shares, share_columns)
        position = np.full(n, -1, dtype=np.int64)
        position[kept] = np.arange(len(kept))

        def share_column(cells: tuple[np.ndarray, np.ndarray]) -> pa.Array:
            column = np.full(len(kept), np.nan)  # NaN stays NaN: pandas' missing float
            at = position[cells[0]]
            column[at[at >= 0]] = cells[1][at >= 0]
            return pa.array(column)

        jobs: dict[str, Future[pa.Array]] = {
            "cohort": pool.submit(disease.take, kept),
            "response_id": pool.submit(take_rows, response_id, kept),
            "respondent_key": pool.submit(_hex_keys, respondents, kept),
            **{
                c: pool.submit(coded[c].take, kept)
                for c in ("specialty", "region", "facility_type")
            },
            "started_at": pool.submit(_timestamps, started, started_ok, kept),
            "submitted_at": pool.submit(_timestamps, submitted, submitted_ok, kept),
            "n_patients": pool.submit(_numbers, n_patients, kept),
            "attention_check": pool.submit(coded["attention_check"].take, kept),
            **{
                name: pool.submit(share_column, cells)
                for name, cells in zip(
                    share_columns, zip(shares.rows, shares.numbers, strict=True), strict=True
                )
            },
            "source_file": pool.submit(source_file.take, kept),
            "source_row": pool.submit(_numbers, source_row, kept),
        }
        cleansed = pa.table({name: job.result() for name, job in jobs.items()})
        rejections = pa.concat_tables([job.result() for job in rejected])
        summary = summarised.result()

    return CleanseResult(
        cleansed=cleansed.to_pandas(split_blocks=True, self_destruct=True),
        rejections=rejections.to_pandas(split_blocks=True, self_destruct=True),
        summary=summary,
    )


@dataclass
class _Respondents:
    """The normalised respondent ids' keyed hash, per row (see ``respondent_key``)."""

    present: np.ndarray  # bool: an id is there
    first: np.ndarray  # uint64: the first half of the keyed hash (0 where absent)
    second: np.ndarray  # uint64: the second half


def _respondents(
    values: pa.Array, key: bytes, diseases: Future[tuple[_Coded, np.ndarray]]
) -> tuple[_Respondents, _Groups]:
    """Normalise the ids, hash them under ``key`` and group them with their cohorts."""
    text = _normalized(values)
    present = valid_mask(text)
    if present.all():
        respondents = _Respondents(present, *_keyed_hashes(text, key))
    else:
        rows = np.flatnonzero(present)
        first, second = np.zeros(len(text), np.uint64), np.zeros(len(text), np.uint64)
        first[rows], second[rows] = _keyed_hashes(take_rows(text, rows), key)
        respondents = _Respondents(present, first, second)
    return respondents, _Groups(respondents, diseases.result()[1])


def _normalized(values: pa.ChunkedArray) -> pa.ChunkedArray:
    """``normalize_text`` chunk by chunk."""
    return pa.chunked_array([normalize_text(c) for c in text_chunks(values)], pa.large_string())


def _keyed_hashes(ids: pa.Array | pa.ChunkedArray, key: bytes) -> tuple[np.ndarray, np.ndarray]:
    """The two uint64 halves of the keyed hash of each id (no nulls).

    See the module docstring: two SipHash-2-4 keys derived from ``key`` with HMAC-SHA256,
    applied by pandas in C to the UTF-8 bytes (bytes pass through ``hash_array`` as they
    are; latin-1 only maps the 16 key bytes to the ``hash_key`` string one to one).
    """
    derived = hmac.digest(key, KEY_DERIVATION, "sha256")
    values = ids.cast(pa.large_binary()).to_numpy(zero_copy_only=False)
    if len(values) == 0:
        return np.zeros(0, np.uint64), np.zeros(0, np.uint64)
    first, second = (
        pd.util.hash_array(
            values, encoding="latin-1", hash_key=half.decode("latin-1"), categorize=False
        )
        for half in (derived[:16], derived[16:])
    )
    return first, second


_SPREAD = np.uint64(0x9E3779B97F4A7C15)  # odd: spreads cohort numbers over 64 bits


class _Groups:
    """The rows with a respondent and a known cohort, ordered by (respondent, cohort).

    Sorting needs only a 64-bit key per row (the first half of the keyed hash plus a
    multiple of the cohort); rows whose key repeats are then grouped exactly, on the
    whole 128-bit hash and the cohort.
    """

    def __init__(self, respondents: _Respondents, cohort: np.ndarray) -> None:
        self.respondents, self.cohort = respondents, cohort
        rows = np.flatnonzero(respondents.present & (cohort >= 0))
        self.key = respondents.first + cohort.astype(np.uint64) * _SPREAD
        self.order = rows[np.argsort(self.key[rows])]

    def superseded(self, candidates: np.ndarray, submitted: np.ndarray) -> np.ndarray:
        """Candidate rows that a later submission (same respondent and cohort) supersedes:
        per group the latest ``submitted`` stays, a tie going to the later row."""
        out = np.zeros(len(candidates), dtype=bool)
        rows = self.order[candidates[self.order]]
        key = self.key[rows]
        same = key[1:] == key[:-1]
        if not same.any():
            return out
        repeated = np.zeros(len(rows), dtype=bool)
        repeated[1:] |= same
        repeated[:-1] |= same
        idx = rows[repeated]
        first, second = self.respondents.first[idx], self.respondents.second[idx]
        cohort = self.cohort[idx]
        order = np.lexsort((idx, submitted[idx], cohort, second, first))
        first, second, cohort = first[order], second[order], cohort[order]
        group_continues = (
            (first[1:] == first[:-1]) & (second[1:] == second[:-1]) & (cohort[1:] == cohort[:-1])
        )
        out[idx[order[:-1][group_continues]]] = True
        return out


def _hex_keys(respondents: _Respondents, rows: np.ndarray, nulls: bool = False) -> pa.Array:
    """``respondent_key`` text of ``rows`` (with ``nulls``, null where there is no id)."""
    words = np.empty((len(rows), 2), dtype=">u8")
    words[:, 0], words[:, 1] = respondents.first[rows], respondents.second[rows]
    digits = np.frombuffer(binascii.hexlify(words.data), dtype=np.uint8)
    offsets = np.arange(0, len(rows) * KEY_HEX_DIGITS + 1, KEY_HEX_DIGITS, dtype=np.int64)
    valid = respondents.present[rows]
    missing = int(len(rows) - np.count_nonzero(valid)) if nulls else 0
    validity = pa.py_buffer(np.packbits(valid, bitorder="little")) if missing else None
    return pa.Array.from_buffers(
        pa.large_string(),
        len(rows),
        [validity, pa.py_buffer(offsets), pa.py_buffer(digits)],
        missing,
    )


@dataclass
class _Coded:
    """A column of few distinct values: each normalised once, and an index per row."""

    values: pa.Array  # large_string: NFKC-normalised, stripped; null if empty; last is null
    index: np.ndarray  # per row, into values

    @property
    def present(self) -> np.ndarray:
        return valid_mask(self.values)[self.index]

    def equals(self, value: str) -> np.ndarray:
        return pc.fill_null(pc.equal(self.values, value), False).to_numpy(zero_copy_only=False)[
            self.index
        ]

    def take(self, rows: np.ndarray) -> pa.Array:
        return self.values.take(pa.array(self.index[rows]))


_FEW = 1 << 16  # beyond this many distinct values, normalise the column first


def _coded(values: pa.Array | pa.ChunkedArray) -> _Coded:
    """``values`` (categories such as specialty or disease) as a ``_Coded`` column."""
    dictionary, indices = _dictionary(values)
    if len(dictionary) > _FEW:  # not categories after all: the general way
        dictionary, indices = _dictionary(_normalized(values))
        distinct = pa.concat_arrays([dictionary, pa.nulls(1, pa.large_string())])
    else:
        distinct = pa.array(
            [
                *(unicodedata.normalize("NFKC", v).strip() or None for v in dictionary.to_pylist()),
                None,
            ],
            pa.large_string(),
        )
    index = pc.fill_null(indices, len(distinct) - 1).to_numpy(zero_copy_only=False)
    return _Coded(distinct, index)


def _dictionary(values: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, pa.ChunkedArray]:
    """The distinct values of a text column and each row's index into them (null: null),
    the chunks encoded against one dictionary."""
    encoded = as_chunked(values).dictionary_encode().unify_dictionaries()
    if encoded.num_chunks == 0:
        return pa.array([], pa.large_string()), pa.chunked_array([], pa.int32())
    dictionary = encoded.chunk(0).dictionary
    return dictionary, pa.chunked_array([c.indices for c in encoded.chunks], pa.int32())


def _diseases(values: pa.Array, codes: pa.Array) -> tuple[_Coded, np.ndarray]:
    """Normalised, lower-cased disease codes and their cohort's index (-1: none/unknown).

    Lower-casing and matching are done on the distinct values only.
    """
    coded = _coded(values)
    lowered = pc.utf8_lower(coded.values)
    cohort = _indices(pc.index_in(lowered, value_set=codes))
    return _Coded(lowered, coded.index), cohort[coded.index]


def _timestamps(us: np.ndarray, ok: np.ndarray, rows: np.ndarray) -> pa.Array:
    return pa.array(us[rows], type=pa.int64(), mask=~ok[rows]).cast(TIMESTAMP_TYPE)


def _numbers(values: np.ndarray, rows: np.ndarray) -> pa.Array:
    return pa.array(values[rows])


class _Runs:
    """A text column that is a few long runs of one value (``source_file``: one per file).

    ``take`` writes each run's value once per taken row from its bytes, much cheaper than
    a general take; a column of many runs falls back to one.
    """

    def __init__(self, values: pa.ChunkedArray) -> None:
        self.values = values
        ends: list[np.ndarray] = []
        self.names: list[str] = []
        start = 0
        for chunk in values.chunks:  # each chunk's runs, at their rows in the column
            if len(chunk):
                runs = pc.run_end_encode(chunk)
                ends.append(runs.run_ends.to_numpy(zero_copy_only=False).astype(np.int64) + start)
                self.names += runs.values.to_pylist()
            start += len(chunk)
        few = bool(ends) and len(self.names) * 64 <= len(values) and not values.null_count
        self.ends = np.concatenate(ends) if few else None

    def take(self, rows: np.ndarray) -> pa.Array:
        if self.ends is None:
            return take_rows(self.values, rows)
        counts = np.diff(np.searchsorted(rows, self.ends, side="left"), prepend=0)
        encoded = [name.encode("utf-8") for name in self.names]
        lengths = np.repeat([len(e) for e in encoded], counts)
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        data = b"".join(e * c for e, c in zip(encoded, counts.tolist(), strict=True))
        return pa.Array.from_buffers(
            pa.large_string(), len(rows), [None, pa.py_buffer(offsets), pa.py_buffer(data)]
        )


def _rejections(
    raw: dict[str, pa.Array],
    disease: _Coded,
    response_id: pa.Array,
    respondents: _Respondents,
    mask: np.ndarray,
    rows: np.ndarray,
    source_file: _Runs,
    source_row: np.ndarray,
) -> pa.Table:
    return pa.table(
        {
            "cohort": disease.take(rows),
            "response_id": take_rows(response_id, rows),
            "reasons": pa.array(_REASON_TEXT[mask[rows]], pa.large_string()),
            "source_file": source_file.take(rows),
            "source_row": pa.array(source_row[rows]),
            "raw": _raw_json(raw, rows, _hex_keys(respondents, rows, nulls=True)),
        }
    )


def parse_timestamps(
    values: pd.Series | pa.Array | pa.ChunkedArray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parse timestamp text as delivered (see the module docstring) to UTC.

    Returns ``(microseconds since the epoch as int64, ok, present)``: ``present`` marks the
    non-empty values (after normalisation), ``ok`` those that parse, including a valid
    date (2024-02-30 does not); where ``ok`` is false the number is meaningless. A chunked
    column is parsed chunk by chunk, never joined.
    """
    chunks = text_chunks(values)
    if len(chunks) > 1:
        parts = [_timestamps_of(chunk) for chunk in chunks]
        return tuple(np.concatenate([part[i] for part in parts]) for i in range(3))
    return _timestamps_of(chunks[0])


def _timestamps_of(text: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``parse_timestamps`` of one contiguous ``large_string`` array."""
    n = len(text)
    offsets, data = string_buffers(text)
    lengths = offsets[1:] - offsets[:-1]
    present = (lengths != 0) & valid_mask(text)
    result = np.zeros(n, dtype=np.int64)
    ok = np.zeros(n, dtype=bool)
    parsed = np.zeros(n, dtype=bool)

    fast = np.flatnonzero(present & _TS_FAST_WIDTH[np.minimum(lengths, 63)])
    if len(fast):
        rows, micros, good = _fixed_timestamps(offsets, data, fast, lengths[fast])
        result[rows], ok[rows], parsed[rows] = micros, good, True

    # Anything else (spaces, full-width digits, one-digit fields, fractions): normalised,
    # then a regular expression.
    rest = np.flatnonzero(present & ~parsed)
    if len(rest):
        normalised = normalize_text(text.take(pa.array(rest)))
        present[rest[~valid_mask(normalised)]] = False
        groups = pc.extract_regex(normalised, _TS_FULL)
        matched = valid_mask(groups)
        groups = groups.filter(pa.array(matched))
        fraction = pc.utf8_slice_codeunits(pc.utf8_rpad(groups.field("fraction"), 6, "0"), 0, 6)
        zone = _zone_offsets(groups.field("zone"))
        fields = [_ints(groups.field(name)) for name in _TS_GROUPS]
        micros, good = _utc_micros(*fields, zone)
        rows = rest[matched]
        result[rows] = micros + _ints(fraction)
        ok[rows] = good & (zone != _BAD_OFFSET)
    return result, ok, present


_TS_GROUPS = ("year", "month", "day", "hour", "minute", "second")
_MONTH_DAYS = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31, 0], dtype=np.int8)
_MONTH_START = np.concatenate([[0], np.cumsum(_MONTH_DAYS[:-1], dtype=np.int32)[:-1], [0]])


def _days_from_civil(y: np.ndarray, m: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 of proleptic Gregorian dates (H. Hinnant's algorithm)."""
    y = y - (m <= 2)
    era = np.floor_divide(y, 400)
    year_of_era = y - era * 400
    day_of_year = (153 * (m + np.where(m > 2, -3, 9)) + 2) // 5 + d - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146097 + day_of_era - 719468


_YEARS = np.arange(10000, dtype=np.int64)  # four digits: every year a timestamp can name
_LEAP = (_YEARS % 4 == 0) & ((_YEARS % 100 != 0) | (_YEARS % 400 == 0))
_YEAR_START = _days_from_civil(_YEARS, np.ones_like(_YEARS), np.ones_like(_YEARS)).astype(np.int32)


def _utc_micros(
    y: np.ndarray,
    mo: np.ndarray,
    d: np.ndarray,
    h: np.ndarray,
    mi: np.ndarray,
    s: np.ndarray,
    zone: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Microseconds since the epoch (UTC) of local fields and the zone's offset (seconds),
    and whether the fields name a real time. ``y`` must lie in 0..9999 (four digits)."""
    month = np.clip(mo, 0, 13)
    leap = _LEAP[y]
    good = (month >= 1) & (month <= 12) & (d >= 1)
    good &= d <= _MONTH_DAYS[month] + (leap & (month == 2))
    good &= (h <= 23) & (mi <= 59) & (s <= 59)
    days = _YEAR_START[y] + _MONTH_START[month] + (leap & (month > 2)) + d - 1  # int32
    clock = h.astype(np.int32) * 3600 + mi.astype(np.int32) * 60 + s.astype(np.int32)
    return (days.astype(np.int64) * 86400 + (clock - zone)) * 1_000_000, good


def _fixed_timestamps(
    offsets: np.ndarray, data: np.ndarray, rows: np.ndarray, lengths: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``rows`` (of a fast width) that have the fixed layout: ``(rows, micros, ok)``.

    Their first 19 bytes, one row of a byte matrix each, are checked and read column by
    column in uint8; each distinct zone suffix is decoded once.
    """
    starts = offsets[rows]
    windows = np.lib.stride_tricks.sliding_window_view(data, _TS_PREFIX)
    matrix = np.asfortranarray(windows[starts])  # column-wise passes read contiguous bytes
    digits = matrix - np.uint8(48)
    layout = np.ones(len(rows), dtype=bool)
    for c in _TS_DIGITS:
        layout &= digits[:, c] <= 9
    date_sep = matrix[:, 4]
    layout &= ((date_sep == ord("-")) | (date_sep == ord("/"))) & (matrix[:, 7] == date_sep)
    layout &= (matrix[:, 10] == ord("T")) | (matrix[:, 10] == ord(" "))
    layout &= (matrix[:, 13] == ord(":")) & (matrix[:, 16] == ord(":"))
    zone, zone_ok = _fixed_zones(data, starts + _TS_PREFIX, lengths - _TS_PREFIX)
    layout &= zone_ok

    def two(c: int) -> np.ndarray:
        return digits[:, c] * np.uint8(10) + digits[:, c + 1]

    fields = [two(0).astype(np.int16) * 100 + two(2), two(5), two(8), two(11), two(14), two(17)]
    if not layout.all():  # the others go the slow way
        rows, zone = rows[layout], zone[layout]
        fields = [field[layout] for field in fields]
    micros, good = _utc_micros(*fields, zone)
    return rows, micros, good


def _fixed_zones(
    data: np.ndarray, starts: np.ndarray, widths: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Offsets (seconds east of UTC) of the zone suffixes at ``starts`` (``widths`` bytes,
    at most 6: 0 = none, JST), and whether each is ``Z``, ``±HH``, ``±HHMM`` or ``±HH:MM``.

    Each suffix is read as one integer (its bytes, then its width in the top byte); the
    few distinct ones are decoded in Python.
    """
    zone = np.full(len(starts), _JST_SECONDS, dtype=np.int64)
    ok = np.ones(len(starts), dtype=bool)
    at = np.flatnonzero(widths > 0)
    if len(at) == 0:
        return zone, ok
    if len(data) < 8:
        data = np.concatenate([data, np.zeros(8, dtype=np.uint8)])
    words = np.ndarray((len(data) - 7,), dtype="<u8", buffer=data, strides=(1,))  # unaligned
    begin, width = starts[at], widths[at]
    read = np.minimum(begin, len(data) - 8)  # the last bytes: read earlier, shift down
    shift = ((begin - read) * 8).astype(np.uint64)
    keys = (words[read] >> shift) & _LOW_BYTES[width] | (width.astype(np.uint64) << np.uint64(56))
    distinct = np.unique(keys)
    offsets = []
    for key in distinct.tolist():
        size = key >> 56
        suffix = (key & ((1 << 56) - 1)).to_bytes(7, "little")[:size]
        offset = _zone_offset(suffix.decode("ascii")) if _TS_ZONE.fullmatch(suffix) else None
        offsets.append(_BAD_OFFSET if offset is None else offset)
    table = np.array(offsets, dtype=np.int64)
    found = table[np.searchsorted(distinct, keys)] if len(distinct) > 1 else table[0]
    zone[at] = found
    ok[at] = found != _BAD_OFFSET
    return zone, ok


_LOW_BYTES = np.array([(1 << (8 * n)) - 1 for n in range(8)], dtype=np.uint64)


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


def _shares(
    cells: list[tuple[np.ndarray, np.ndarray, np.ndarray]], rules: CleanseRules, n: int
) -> _Shares:
    """Combine the parsed share columns (``parse_number_cells`` of each)."""
    out = _Shares([], [], np.zeros(n), np.zeros(n, dtype=bool), np.zeros(n, dtype=bool))
    for rows, numbers, bad_rows in cells:
        out.rows.append(rows)
        out.numbers.append(numbers)
        out.total[rows] += numbers
        out.bad[bad_rows] = True
        out.out_of_range[rows[(numbers < rules.share_min) | (numbers > rules.share_max)]] = True
    return out


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
    # constant text between the values is joined into one literal (fewer, longer pieces)
    parts: list[pa.Array | pa.Scalar] = []
    text = "{"
    for name, column in raw.items():
        cells = take_rows(column, rows).combine_chunks()  # the rejected rows: few
        if name == "respondent_id":
            name, cells = "respondent_key", pc.fill_null(respondent_key, _lit(""))
        key = json.dumps(name, ensure_ascii=False)
        cells = _json_escaped(cells)
        if not parts:
            parts += [_lit(text + key + ':"'), pc.fill_null(cells, _lit(""))]
            text = '"'
        elif cells.null_count:  # a column the row's file may lack: the pair is left out
            joined = pc.binary_join_element_wise(_lit("," + key + ':"'), cells, _lit('"'), _lit(""))
            parts += [_lit(text), pc.fill_null(joined, _lit(""))]
            text = ""
        else:
            parts += [_lit(text + "," + key + ':"'), cells]
            text = '"'
    parts.append(_lit(text + "}"))
    return pc.binary_join_element_wise(*parts, _lit(""))


def _summary(
    export: RawExport,
    mask: np.ndarray,
    flags: dict[str, np.ndarray],
    cohort_index: np.ndarray,
    shares: _Shares,
    share_columns: list[str],
) -> dict[str, Any]:
    codes = export.cohorts["code"].astype(str).tolist()
    if "label" in export.cohorts:
        labels = export.cohorts["label"].fillna("").astype(str).tolist()
    else:
        labels = codes
    index = np.where(cohort_index < 0, len(codes), cohort_index)
    kept = mask == 0
    kept_index = np.where(kept, index, len(codes))  # the last bucket: rejected or no cohort
    counts_all = np.bincount(index, minlength=len(codes) + 1)
    counts_kept = np.bincount(kept_index, minlength=len(codes) + 1)
    answered = np.zeros((len(codes) + 1, len(share_columns)), dtype=bool)
    for j, rows in enumerate(shares.rows):
        answered[:, j] = np.bincount(kept_index[rows], minlength=len(codes) + 1) > 0
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
        "cleansed_rows": int(np.count_nonzero(kept)),
        "rejected_rows": int(len(mask) - np.count_nonzero(kept)),
        "rejections_by_reason": {r: int(np.count_nonzero(flags[r])) for r in REASONS},
        "cohorts": cohorts,
        "share_columns": list(share_columns),
    }
