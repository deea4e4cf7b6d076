"""Timestamps as delivered, to UTC microseconds (see ``pipeline.core.cleanse``).

The layouts nearly every timestamp has are read straight from the bytes (an ASCII fast
path); anything else is NFKC-normalised and matched by a regular expression.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.core.cleanse.values import index_array
from pipeline.core.rawdata import (
    as_text,
    empty_to_null,
    normalize_text,
    string_buffers,
    take_rows,
    text_chunks,
    valid_mask,
)

_JST_SECONDS = 9 * 3600

BAD_OFFSET = np.iinfo(np.int64).min

_TS_FULL = (
    r"^(?P<year>[0-9]{4})[-/](?P<month>[0-9]{1,2})[-/](?P<day>[0-9]{1,2})[T ]"
    r"(?P<hour>[0-9]{1,2}):(?P<minute>[0-9]{2})"
    r"(?::(?P<second>[0-9]{2})(?:[.,](?P<fraction>[0-9]{1,9}))?)?"
    r" ?(?P<zone>[Zz]|[+-][0-9]{2}(?::?[0-9]{2})?)?$"
)

_TS_PREFIX = 19

_TS_FAST_WIDTH = np.zeros(64, dtype=bool)

_TS_FAST_WIDTH[[19, 20, 22, 24, 25]] = True

_TS_DIGITS = (0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18)

_TS_ZONE = re.compile(rb"[Zz]|[+-][0-9]{2}(?::?[0-9]{2})?")


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
    parts = [_fast_timestamps(chunk) for chunk in chunks]  # the bytes, chunk by chunk
    micros, ok, present, parsed = (np.concatenate([part[i] for part in parts]) for i in range(4))
    # Anything else (spaces, full-width digits, one-digit fields, fractions): gathered from
    # every chunk, normalised, then one regular expression.
    rest = np.flatnonzero(present & ~parsed)
    if len(rest):
        text = take_rows(pa.chunked_array(chunks, pa.large_string()), rest).combine_chunks()
        rows, found, good, empty = _slow_timestamps(text)
        present[rest[empty]] = False
        micros[rest[rows]], ok[rest[rows]] = found, good
    return micros, ok, present


def _fast_timestamps(text: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(micros, ok, present, parsed)`` of one contiguous ``large_string`` array, the
    fixed layouts read from the bytes; ``parsed`` is false where the slow path decides."""
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
    return result, ok, present, parsed


def _slow_timestamps(text: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The regular-expression path for any timestamp text: ``(rows matched, micros, ok,
    empty)``, ``empty`` marking the values that normalise to nothing."""
    normalised = normalize_text(text)
    empty = ~valid_mask(normalised)
    groups = pc.extract_regex(normalised, _TS_FULL)
    matched = valid_mask(groups)
    groups = groups.filter(pa.array(matched))
    fraction = pc.utf8_slice_codeunits(pc.utf8_rpad(groups.field("fraction"), 6, "0"), 0, 6)
    zone = _zone_offsets(groups.field("zone"))
    fields = [_ints(groups.field(name)) for name in _TS_GROUPS]
    micros, good = _utc_micros(*fields, zone)
    return np.flatnonzero(matched), micros + _ints(fraction), good & (zone != BAD_OFFSET), empty


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

    ``YYYY-MM-DDTHH:MM:SS`` is read as three little-endian 64-bit words (bytes 0-7, 8-15
    and 11-18), checked and converted eight bytes at a time (SWAR: no byte matrix); each
    distinct zone suffix is decoded once.
    """
    starts = offsets[rows]
    words = _words(data)
    w0, w1, w2 = words[starts], words[starts + 8], words[starts + 11]
    layout = _digits_at(w0, _W0_DIGITS) & _digits_at(w1, _W1_DIGITS) & _digits_at(w2, _W2_DIGITS)
    date_sep = _byte(w0, 4)
    layout &= ((date_sep == ord("-")) | (date_sep == ord("/"))) & (_byte(w0, 7) == date_sep)
    layout &= (_byte(w1, 2) == ord("T")) | (_byte(w1, 2) == ord(" "))
    layout &= (_byte(w1, 5) == ord(":")) & (_byte(w2, 5) == ord(":"))
    zone, zone_ok = _fixed_zones(data, starts + _TS_PREFIX, lengths - _TS_PREFIX)
    layout &= zone_ok
    if not layout.all():  # the others go the slow way
        rows, zone, w0, w1, w2 = rows[layout], zone[layout], w0[layout], w1[layout], w2[layout]
    p0, p1, p2 = _pairs(w0, _W0_DIGITS), _pairs(w1, _W1_DIGITS), _pairs(w2, _W2_DIGITS)
    year = _byte(p0, 0).astype(np.int16) * 100 + _byte(p0, 2)
    fields = [year, _byte(p0, 5), _byte(p1, 0), _byte(p1, 3), _byte(p1, 6), _byte(p2, 6)]
    micros, good = _utc_micros(*fields, zone)
    return rows, micros, good


def _mask(positions: tuple[int, ...], byte: int = 0xFF) -> np.uint64:
    return np.uint64(sum(byte << (8 * p) for p in positions))


_W0_DIGITS = (0, 1, 2, 3, 5, 6)  # YYYY-MM-
_W1_DIGITS = (0, 1, 3, 4, 6, 7)  # DDTHH:MM
_W2_DIGITS = (6, 7)  # HH:MM:SS (only SS is new)
_HIGH_NIBBLES = np.uint64(0xF0F0F0F0F0F0F0F0)
_ZEROS = np.uint64(0x3030303030303030)
_SIXES = np.uint64(0x0606060606060606)


def _words(data: np.ndarray) -> np.ndarray:
    """Every unaligned little-endian 64-bit word of ``data`` (word ``i`` = bytes
    ``i..i+7``), a view; ``data`` is padded when shorter than 8 bytes."""
    if len(data) < 8:
        data = np.concatenate([data, np.zeros(8, dtype=np.uint8)])
    return np.ndarray((len(data) - 7,), dtype="<u8", buffer=data, strides=(1,))


def _byte(words: np.ndarray, position: int) -> np.ndarray:
    return (words >> np.uint64(8 * position)).astype(np.uint8)


def _digits_at(words: np.ndarray, positions: tuple[int, ...]) -> np.ndarray:
    """Whether the bytes at ``positions`` of each word are all ASCII digits: a byte ``b``
    is one when ``b & 0xF0`` and ``(b + 6) & 0xF0`` are both ``0x30`` (the sum carries
    into the next byte only from a byte of 0xFA or more, which fails the first test)."""
    mask = _mask(positions, 0xF0)
    high = (words & mask) == (_ZEROS & mask)
    return high & (((words + (_SIXES & _mask(positions, 0x0F))) & mask) == (_ZEROS & mask))


def _pairs(words: np.ndarray, digits: tuple[int, ...]) -> np.ndarray:
    """Words whose byte ``p`` holds ``10 * digit(p) + digit(p + 1)`` for each digit pair
    starting at ``p`` (the digit bytes must be ASCII digits; the others are zeroed)."""
    values = (words - (_ZEROS & _mask(digits))) & _mask(digits)  # no borrow: digits >= "0"
    return values * np.uint64(10) + (values >> np.uint64(8))  # bytes stay <= 99: no carry


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
    words = _words(data)
    begin, width = starts[at], widths[at]
    read = np.minimum(begin, len(data) - 8)  # the last bytes: read earlier, shift down
    shift = ((begin - read) * 8).astype(np.uint64)
    keys = (words[read] >> shift) & _LOW_BYTES[width] | (width.astype(np.uint64) << np.uint64(56))
    codes, distinct = pd.factorize(keys)  # hashing: no sort of every suffix
    offsets = []
    for key in distinct.tolist():
        size = key >> 56
        suffix = (key & ((1 << 56) - 1)).to_bytes(7, "little")[:size]
        offset = _zone_offset(suffix.decode("ascii")) if _TS_ZONE.fullmatch(suffix) else None
        offsets.append(BAD_OFFSET if offset is None else offset)
    table = np.array(offsets, dtype=np.int64)
    found = table[codes]
    zone[at] = found
    ok[at] = found != BAD_OFFSET
    return zone, ok


_LOW_BYTES = np.array([(1 << (8 * n)) - 1 for n in range(8)], dtype=np.uint64)


def _zone_offsets(zones: pa.Array) -> np.ndarray:
    """Seconds east of UTC for each zone text (empty or null = JST); invalid → BAD_OFFSET."""
    encoded = pc.fill_null(zones, "").dictionary_encode()
    table = np.array([_zone_offset(z) for z in encoded.dictionary.to_pylist()], dtype=np.int64)
    return table[index_array(encoded.indices)] if len(table) else np.zeros(0, dtype=np.int64)


def _zone_offset(zone: str) -> int:
    if zone == "":
        return _JST_SECONDS
    if zone in ("Z", "z"):
        return 0
    digits = zone[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:] or 0)
    if hours > 23 or minutes > 59:
        return int(BAD_OFFSET)
    return (1 if zone[0] == "+" else -1) * (hours * 3600 + minutes * 60)


def _ints(values: pa.Array) -> np.ndarray:
    """Digit text as int64 numpy; empty (an optional regex group not taken) → 0."""
    numbers = pc.cast(empty_to_null(as_text(values)), pa.int64())
    return pc.fill_null(numbers, 0).to_numpy(zero_copy_only=False)
