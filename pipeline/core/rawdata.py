"""Reading the raw survey export as delivered (DESIGN.md, "Raw survey export").

The export is every ``*.csv`` under one directory: ``cohorts.csv`` and ``frame.csv`` at its
top level, every other CSV (at any depth) a response file. Files are UTF-8 (with or without
BOM) or CP932 (the Windows superset of Shift_JIS), with LF or CRLF line ends; the encoding
is detected per file. Response values stay exactly as delivered (strings, ``""`` for an
empty field); cleansing (``pipeline.core.cleanse``) interprets them.

Header names are NFKC-normalised, stripped and lower-cased, so ``ｎ_patients `` and
``n_patients`` name the same column. ``source_row`` is the line in the file where a
record starts, the header being line 1 (a quoted value spanning lines does not shift the
rows after it).

Also here: the vectorised normalisation shared with cleansing (``normalize_text``,
``parse_numbers``), so that the frame and the responses follow the same rules.

Reading is built for large exports (a million rows take about as long as arrow needs to
parse them with type inference): arrow parses every file on all cores, first as if no
value spans lines (it may then cut blocks at any line break; the careful parse takes over
whenever that does not hold exactly); CP932 files are parsed as raw bytes (their ASCII
bytes are ASCII, and no second byte is ``,``, ``"``, CR or LF), and only the distinct
non-ASCII values of a column are decoded; two helper threads read and hash the files,
count their line breaks, decode and join columns while arrow parses.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import re
import unicodedata
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from pipeline.errors import InputError

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

_BOM = b"\xef\xbb\xbf"
_UTF8 = "utf-8"
_CP932 = "cp932"
_BLOCK_SIZE = 8 << 20  # arrow parses blocks in parallel; each is a chunk of the frame
_HELPERS = 2
_PLAIN_NUMBER = r"^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)$"
_GROUPED_NUMBER = r"^[+-]?[0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]+)?$"


@dataclass
class RawExport:
    """A raw export as read from disk.

    - ``responses``: every record of every response file, in file order (files sorted by
      path), columns ``RESPONSE_COLUMNS``, then the union of the share columns (in order of
      first appearance), then any other columns, then ``source_file`` (path relative to
      the raw directory, ``/``-separated) and ``source_row`` (int64, line number). Values
      are the decoded strings as delivered; ``""`` is an empty field, null a column the
      row's file does not have.
    - ``cohorts``: ``code`` (NFKC-normalised, stripped, lower-cased, checked against
      ``[a-z0-9][a-z0-9_-]*``) and ``label`` (NFKC-normalised, stripped), in file order.
    - ``frame``: ``specialty, region, facility_type`` (NFKC-normalised, stripped) and
      ``n_physicians`` (int64).
    - ``share_columns``: the ``share_<treatment>`` columns of ``responses``.
    - ``files``: relative path → sha256 (hex) of the bytes of every CSV read.
    """

    responses: pd.DataFrame
    cohorts: pd.DataFrame
    frame: pd.DataFrame
    share_columns: list[str]
    files: dict[str, str]


def decode_bytes(data: bytes, file: str) -> str:
    """The text of a CSV file's bytes: UTF-8 (a BOM is dropped) if valid, else CP932.

    Raises ``InputError`` naming ``file``, the line and the byte offset of the first byte
    that is neither.
    """
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as utf8_error:
        try:
            return data.decode("cp932")
        except UnicodeDecodeError as cp932_error:
            raise _undecodable(data, file, utf8_error, cp932_error) from None


def checksums(raw_dir: Path) -> dict[str, str]:
    """Relative path → sha256 (hex) of every ``*.csv`` under ``raw_dir``, without parsing.

    The same files and digests as ``RawExport.files``; raises ``InputError`` when the
    directory is missing or holds no CSV file.
    """
    return {rel: _sha256(path.read_bytes()) for rel, path in _csv_files(raw_dir)}


def read_cohorts(raw_dir: Path) -> pd.DataFrame:
    """Only ``cohorts.csv`` at the top of ``raw_dir``, as ``RawExport.cohorts`` holds it.

    For deciding which cohorts a run has without reading the responses; raises the same
    ``InputError``s as ``read_raw_export`` for that file.
    """
    path = Path(raw_dir) / COHORTS_FILE
    if not Path(raw_dir).is_dir():
        raise InputError(f"the raw directory {raw_dir} does not exist")
    if not path.is_file():
        raise InputError(f"no {COHORTS_FILE} in the raw directory {raw_dir}", file=COHORTS_FILE)
    return _cohorts(_parse_csv(path.read_bytes(), COHORTS_FILE))


def read_raw_export(raw_dir: Path) -> RawExport:
    """Read every ``*.csv`` under ``raw_dir`` (recursively, sorted by path) as delivered.

    Raises ``InputError`` naming the file (and row and column where it applies) when the
    directory is missing or holds no CSV, when ``cohorts.csv`` or ``frame.csv`` is missing
    from its top level (or sits below it), when a file is empty, undecodable or has a
    malformed CSV line, when a header lacks required columns or repeats a name, when a
    cohort code is invalid or repeated, and when a frame value is empty or not a whole
    number of physicians. Response files may differ in their share columns (the union is
    kept) and in column order.
    """
    files = _csv_files(raw_dir)
    names = {rel for rel, _ in files}
    for special in (COHORTS_FILE, FRAME_FILE):
        nested = sorted(rel for rel in names if rel.endswith("/" + special))
        if nested:
            raise InputError(
                f"{special} must sit at the top of the raw directory {raw_dir}, not below it",
                file=nested[0],
            )
        if special not in names:
            raise InputError(f"no {special} in the raw directory {raw_dir}", file=special)

    # Arrow parses each file on all cores. Around it, two helper threads read the next
    # files, hash them (hashlib releases the GIL), decode CP932 columns and join the
    # columns at the end, so that little waits on the main thread.
    with ThreadPoolExecutor(max_workers=_HELPERS) as pool:
        hashing: dict[str, Future[str]] = {}
        tables: dict[str, _Parsed] = {}
        content = pool.submit(files[0][1].read_bytes)
        for i, (rel, _) in enumerate(files):
            data = content.result()
            if i + 1 < len(files):  # the next file is read while this one is parsed
                content = pool.submit(files[i + 1][1].read_bytes)
            breaks = pool.submit(_line_breaks, data)  # needed once arrow has parsed
            hashing[rel] = pool.submit(_sha256, data)
            try:
                tables[rel] = _parse_csv(data, rel, pool, breaks)
            except InputError:
                for parsed in tables.values():
                    parsed.resolve()  # an earlier file's error comes first
                raise
        for parsed in tables.values():
            parsed.resolve()
        digests = {rel: future.result() for rel, future in hashing.items()}

        cohorts = _cohorts(tables.pop(COHORTS_FILE))
        frame = _frame(tables.pop(FRAME_FILE))
        if not tables:
            raise InputError(f"no response CSV files in the raw directory {raw_dir}")
        for parsed in tables.values():
            _require(parsed, RESPONSE_COLUMNS)
        parsed_responses = list(tables.values())
        tables.clear()
        responses, share_columns = _responses(parsed_responses)
    return RawExport(responses, cohorts, frame, share_columns, digests)


# --- normalisation shared with cleansing --------------------------------------------------
# Real exports are mostly clean, so these work on arrow's buffers with numpy and copy a
# column only when some value in it actually changes.

_SPACE_BYTES = np.zeros(256, dtype=bool)
_SPACE_BYTES[[9, 10, 11, 12, 13, 28, 29, 30, 31, 32]] = True  # what str.strip() drops in ASCII
_FAST_NUMBER_WIDTH = 8


def as_text(values: pd.Series | pa.Array | pa.ChunkedArray) -> pa.Array:
    """A column as one contiguous arrow ``large_string`` array (nulls kept)."""
    if isinstance(values, pd.Series):
        values = pa.array(values, from_pandas=True)
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    if values.type != pa.large_string():
        values = pc.cast(values, pa.large_string())
    return values


def text_chunks(values: pd.Series | pa.Array | pa.ChunkedArray) -> list[pa.Array]:
    """A column as its contiguous ``large_string`` chunks, without joining them (no copy
    when it already is ``large_string``); at least one chunk, possibly empty."""
    if isinstance(values, pd.Series):
        values = pa.array(values, from_pandas=True)
    chunks = values.chunks if isinstance(values, pa.ChunkedArray) else [values]
    out = [c if c.type == pa.large_string() else pc.cast(c, pa.large_string()) for c in chunks]
    return out or [pa.array([], pa.large_string())]


def as_chunked(values: pd.Series | pa.Array | pa.ChunkedArray) -> pa.ChunkedArray:
    """A column as a ``large_string`` chunked array of ``text_chunks`` (no copy)."""
    return pa.chunked_array(text_chunks(values), pa.large_string())


def take_rows(values: pa.Array | pa.ChunkedArray, rows: np.ndarray) -> pa.ChunkedArray:
    """``values[rows]`` for sorted ``rows``, taken chunk by chunk (arrow's take of a chunked
    array joins the chunks first: a copy of the whole column)."""
    chunks = values.chunks if isinstance(values, pa.ChunkedArray) else [values]
    ends = np.cumsum([len(chunk) for chunk in chunks])
    cuts = np.searchsorted(rows, ends, side="left").tolist()
    parts, begin, start = [], 0, 0
    for chunk, cut, end in zip(chunks, cuts, ends.tolist(), strict=True):
        if cut > begin:
            parts.append(chunk.take(pa.array(rows[begin:cut] - start)))
        begin, start = cut, end
    return pa.chunked_array(parts, values.type)


def string_buffers(values: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(offsets int64 of len + 1, data uint8) of a ``large_string`` array, zero-copy."""
    _, offsets, data = values.buffers()
    offsets = np.frombuffer(offsets, dtype=np.int64)[
        values.offset : values.offset + len(values) + 1
    ]
    if data is None or len(data) == 0:
        return offsets, np.zeros(1, dtype=np.uint8)
    return offsets, np.frombuffer(data, dtype=np.uint8)


def repeated_text(value: str, count: int) -> pa.Array:
    """``count`` times ``value`` as a ``large_string`` array, built from its bytes at once."""
    encoded = value.encode("utf-8")
    offsets = np.arange(0, (count + 1) * len(encoded), len(encoded) or 1, dtype=np.int64)
    offsets = offsets[: count + 1] if encoded else np.zeros(count + 1, dtype=np.int64)
    return pa.Array.from_buffers(
        pa.large_string(), count, [None, pa.py_buffer(offsets), pa.py_buffer(encoded * count)]
    )


def valid_mask(values: pa.Array) -> np.ndarray:
    """Bool mask of the non-null entries (of an array or a chunked array)."""
    if values.null_count == 0:
        return np.ones(len(values), dtype=bool)
    return values.is_valid().to_numpy(zero_copy_only=False)


def empty_to_null(values: pa.Array) -> pa.Array:
    """``values`` (``large_string``) with empty strings turned into nulls, data not copied."""
    offsets, _ = string_buffers(values)
    keep = (offsets[1:] != offsets[:-1]) & valid_mask(values)
    if keep.all():
        return values
    if values.offset:
        values = pa.concat_arrays([values])  # a fresh array starts its bitmap at bit 0
    validity = pa.py_buffer(np.packbits(keep, bitorder="little"))
    _, offsets_buffer, data_buffer = values.buffers()
    return pa.Array.from_buffers(
        pa.large_string(), len(values), [validity, offsets_buffer, data_buffer]
    )


def rows_holding(offsets: np.ndarray, flagged: np.ndarray) -> np.ndarray:
    """The rows (sorted, distinct) of a string array that hold a flagged byte.

    ``flagged`` marks bytes of the data from ``offsets[0]`` to ``offsets[-1]``. Flagged
    bytes come in runs (a character, a word); each run is located by its first and last
    byte, and a run that spans rows marks each of them.
    """
    at = np.flatnonzero(flagged)
    if len(at) == 0:
        return at
    firsts = at[np.diff(at, prepend=-2) != 1] + offsets[0]
    lasts = at[np.diff(at, append=at[-1] + 2) != 1] + offsets[0]
    first = np.searchsorted(offsets, firsts, side="right") - 1
    spans = np.searchsorted(offsets, lasts, side="right") - 1 - first
    if spans.any():  # runs across rows: every row they touch
        first = np.repeat(first, spans + 1) + _ramps(spans + 1)
    return np.unique(first)


def _ramps(lengths: np.ndarray) -> np.ndarray:
    """0, 1, ..., n - 1 for each n in ``lengths``, concatenated."""
    ends = np.cumsum(lengths)
    return np.arange(ends[-1]) - np.repeat(ends - lengths, lengths)


def splice(values: pa.Array, rows: np.ndarray, replacement: pa.Array) -> pa.Array:
    """``values`` (``large_string``) with ``rows`` (sorted, not null) replaced by the values
    of ``replacement`` in turn, in one copy: a few rows by slices, many by a take."""
    if len(rows) * 64 > len(values):  # many: one take from both, in C
        index = np.arange(len(values), dtype=np.int64)
        index[rows] = len(values) + np.arange(len(rows))
        return pa.concat_arrays([values, replacement]).take(pa.array(index))
    if len(rows) == 0:
        return values
    if values.offset:
        values = pa.concat_arrays([values])  # a fresh array starts its bitmap at bit 0
    offsets, data = string_buffers(values)
    new_offsets, new_data = string_buffers(replacement)
    starts, ends = offsets[rows], offsets[rows + 1]
    pieces = [data[offsets[0] : starts[0]]]
    following = [*starts[1:].tolist(), int(offsets[-1])]
    for i, (end, start) in enumerate(zip(ends.tolist(), following, strict=True)):
        pieces.append(new_data[new_offsets[i] : new_offsets[i + 1]])
        pieces.append(data[end:start])
    shift = np.zeros(len(values) + 1, dtype=np.int64)
    shift[rows + 1] = np.diff(new_offsets) - (ends - starts)
    out = offsets - offsets[0] + np.cumsum(shift)
    validity = values.buffers()[0] if values.null_count else None
    return pa.Array.from_buffers(
        pa.large_string(),
        len(values),
        [validity, pa.py_buffer(out), pa.py_buffer(np.concatenate(pieces))],
        values.null_count,
    )


def normalize_text(values: pd.Series | pa.Array | pa.ChunkedArray) -> pa.Array:
    """NFKC-normalised, stripped text (``str.strip``); empty values become null.

    Only the distinct values that are non-ASCII or start or end with a space go through
    Python; the column is copied only if one of them changes.
    """
    text = as_text(values)
    if len(text) == 0:
        return text
    offsets, data = string_buffers(text)
    used = data[offsets[0] : offsets[-1]]
    odd = (used <= 32) | (used >= 0x80)  # spaces, control characters, non-ASCII
    count = int(np.count_nonzero(odd))
    if count == 0:
        return empty_to_null(text)  # printable ASCII without spaces: nothing to normalise
    if count * 4 <= len(text):  # a few odd bytes: the rows holding them are the suspects
        suspect = rows_holding(offsets, odd)
    else:
        nonempty = (offsets[1:] > offsets[:-1]) & valid_mask(text)
        first = data[np.minimum(offsets[:-1], len(data) - 1)]
        last = data[np.maximum(offsets[1:] - 1, 0)]
        is_ascii = pc.fill_null(pc.string_is_ascii(text), True).to_numpy(zero_copy_only=False)
        suspect = np.flatnonzero(nonempty & (~is_ascii | _SPACE_BYTES[first] | _SPACE_BYTES[last]))
    if len(suspect) == 0:
        return empty_to_null(text)
    whole = len(suspect) * 2 > len(text)
    rows = np.arange(len(text)) if whole else suspect
    encoded = (text if whole else text.take(pa.array(rows))).dictionary_encode()
    # the distinct values decide; most columns turn out unchanged and are returned as is
    uniques = encoded.dictionary.to_pylist()
    fixed = [unicodedata.normalize("NFKC", u).strip() for u in uniques]
    changed = np.fromiter((f != u for f, u in zip(fixed, uniques, strict=True)), bool, len(fixed))
    if not changed.any():
        return empty_to_null(text)
    index = pc.fill_null(encoded.indices, 0).to_numpy(zero_copy_only=False)
    hit = changed[index] & valid_mask(encoded.indices)
    replacement = pa.array(fixed, pa.large_string()).take(pa.array(index[hit]))
    return empty_to_null(splice(text, rows[hit], replacement))


def parse_number_cells(
    values: pd.Series | pa.Array | pa.ChunkedArray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parse text as decimal numbers, compactly: ``(rows, numbers, bad_rows)``.

    ``rows``/``numbers`` are the entries holding a number (float64), ``bad_rows`` the
    entries that are present but do not parse; missing entries are in neither. The text
    is normalised first (``normalize_text``); accepted are ``[+-]digits[.digits]``, with
    thousands separators only in groups of three (``1,200``; ``1,2`` is refused) and spaces
    anywhere inside (``1 200``). Plain ASCII numbers are read straight from the bytes.
    A chunked column is parsed chunk by chunk, never joined.
    """
    chunks = text_chunks(values)
    if len(chunks) == 1:
        return _number_cells(chunks[0])
    # The filled cells of every chunk, gathered into one small array (share columns are
    # mostly empty), are parsed at once: far fewer numpy calls than chunk by chunk.
    filled, start = [], 0
    for chunk in chunks:
        offsets, _ = string_buffers(chunk)
        rows = np.flatnonzero((offsets[1:] != offsets[:-1]) & valid_mask(chunk))
        filled.append(rows + start)
        start += len(chunk)
    at = np.concatenate(filled)
    cells = take_rows(pa.chunked_array(chunks, pa.large_string()), at).combine_chunks()
    rows, numbers, bad_rows = _number_cells(cells)
    return at[rows], numbers, at[bad_rows]


def _number_cells(text: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``parse_number_cells`` of one contiguous ``large_string`` array."""
    offsets, data = string_buffers(text)
    filled = np.flatnonzero(offsets[1:] != offsets[:-1])  # most share cells are empty
    if text.null_count:
        filled = filled[valid_mask(text)[filled]]
    widths = offsets[filled + 1] - offsets[filled]
    widths = np.minimum(widths, _FAST_NUMBER_WIDTH + 1).astype(np.uint8)
    rows_out, numbers_out, slow_out = [], [], [filled[widths > _FAST_NUMBER_WIDTH]]
    for width in range(1, _FAST_NUMBER_WIDTH + 1):
        rows = filled[widths == width]
        if not len(rows):
            continue
        starts = offsets[rows]
        ok, numbers = _plain_numbers([data[starts + c] for c in range(width)])
        rows_out.append(rows[ok])
        numbers_out.append(numbers[ok])
        slow_out.append(rows[~ok])
    slow = np.sort(np.concatenate(slow_out))
    bad_rows = np.zeros(0, dtype=np.int64)
    if len(slow):
        numbers, bad = _parse_slow(normalize_text(text.take(pa.array(slow))))
        got = ~np.isnan(numbers)
        rows_out.append(slow[got])
        numbers_out.append(numbers[got])
        bad_rows = slow[bad]
    if not rows_out:
        return np.zeros(0, dtype=np.int64), np.zeros(0), bad_rows
    return np.concatenate(rows_out), np.concatenate(numbers_out), bad_rows


def parse_numbers(values: pd.Series | pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """``parse_number_cells`` as full columns: ``(numbers with NaN where none, bad mask)``."""
    rows, numbers, bad_rows = parse_number_cells(values)
    n = len(values)
    out = np.full(n, np.nan)
    out[rows] = numbers
    bad = np.zeros(n, dtype=bool)
    bad[bad_rows] = True
    return out, bad


def _plain_numbers(columns: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ASCII bytes (given column by column, at most 8) that are ``digits[.digits]``
    or whole numbers with thousands separators in groups of three, and their values."""
    rows, width = len(columns[0]), len(columns)
    mantissa = np.zeros(rows, dtype=np.int32)  # up to 8 digits
    ok = np.ones(rows, dtype=bool)
    if not any((column == ord(".")).any() for column in columns):
        # a separator may sit only where groups of three digits end, counting from the
        # right, after the first group (1 to 3 digits): all of them or none
        groups = [c for c in range(1, width) if (width - 1 - c) % 4 == 3 and width % 4]
        commas = np.zeros(rows, dtype=np.int8)
        for c in range(width):
            digit = columns[c] - np.uint8(48)
            is_digit = digit <= 9
            if c in groups:
                is_comma = columns[c] == ord(",")
                ok &= is_digit | is_comma
                commas += is_comma
                mantissa = np.where(is_digit, mantissa * 10 + digit, mantissa)
            else:
                ok &= is_digit
                mantissa = mantissa * 10 + digit
        if groups:
            ok &= (commas == 0) | (commas == len(groups))
        return ok, mantissa.astype(np.float64)
    seen_digit = np.zeros(rows, dtype=bool)
    dots = np.zeros(rows, dtype=np.int8)
    scale = np.zeros(rows, dtype=np.int8)
    for c in range(width):
        digit = columns[c] - np.uint8(48)
        is_digit = digit <= 9
        is_dot = columns[c] == ord(".")
        ok &= is_digit | is_dot
        mantissa = np.where(is_digit, mantissa * 10 + digit, mantissa)
        scale += is_digit & (dots > 0)
        dots += is_dot
        seen_digit |= is_digit
    return ok & seen_digit & (dots <= 1), mantissa / _POWERS_OF_TEN[scale]


_POWERS_OF_TEN = 10.0 ** np.arange(10)


def _parse_slow(text: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Regex path of ``parse_number_cells`` for normalised text: ``(numbers, bad)``."""
    if pc.any(pc.match_substring(text, " ")).as_py():
        text = pc.replace_substring(text, " ", "")
    ok = pc.fill_null(pc.match_substring_regex(text, _PLAIN_NUMBER), False)
    grouped = pc.fill_null(pc.match_substring_regex(text, _GROUPED_NUMBER), False)
    text = pc.if_else(grouped, pc.replace_substring(text, ",", ""), text)
    ok = pc.or_(ok, grouped)
    numbers = pc.cast(pc.if_else(ok, text, pa.scalar(None, text.type)), pa.float64())
    bad = pc.and_(pc.is_valid(text), pc.invert(ok))
    return (
        numbers.to_numpy(zero_copy_only=False),
        bad.to_numpy(zero_copy_only=False),
    )


# --- reading files ------------------------------------------------------------------------


@dataclass
class _Parsed:
    file: str
    table: pa.Table  # columns named by normalised header, all large_string
    rows: np.ndarray  # int64 line numbers of the records
    pending: Future[pa.Table] | None = None  # the table, while a helper still decodes it

    def resolve(self) -> None:
        if self.pending is not None:
            self.table, self.pending = self.pending.result(), None


def _csv_files(raw_dir: Path) -> list[tuple[str, Path]]:
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise InputError(f"the raw directory {raw_dir} does not exist")
    found = sorted(
        (path.relative_to(raw_dir).as_posix(), path)
        for path in raw_dir.rglob("*.csv")
        if path.is_file()
    )
    if not found:
        raise InputError(f"the raw directory {raw_dir} holds no *.csv file")
    return found


def _undecodable(
    data: bytes, file: str, utf8_error: UnicodeDecodeError, cp932_error: UnicodeDecodeError
) -> InputError:
    # The encoding that got further is the likelier intent; report where it broke.
    utf8_at = utf8_error.start + (len(_BOM) if data.startswith(_BOM) else 0)
    offset = max(utf8_at, cp932_error.start)
    line = data.count(b"\n", 0, offset) + 1
    return InputError(
        f"byte 0x{data[offset]:02x} at byte offset {offset} is neither UTF-8 nor CP932 "
        "(Shift_JIS) text; the export must be UTF-8 or CP932",
        file=file,
        row=line,
    )


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _looks_utf8(data: bytes) -> bool:
    """Whether the start of ``data`` is UTF-8 (arrow validates the rest while parsing)."""
    try:
        codecs.getincrementaldecoder("utf-8")().decode(data[: 1 << 16], final=False)
    except UnicodeDecodeError:
        return False
    return True


class _NotUtf8(Exception):
    """Arrow found invalid UTF-8 past the checked start of a file."""


def _header(data: bytes, file: str, encoding: str) -> list[str]:
    head = data[: 1 << 16]
    end = 0
    while True:  # the first line break outside quotes ends the header
        nl = head.find(b"\n", end)
        if nl < 0:
            end = len(head)
            break
        end = nl + 1
        if head.count(b'"', 0, nl) % 2 == 0:
            break
    if encoding == _UTF8:
        line = head[:end].decode("utf-8", errors="replace")
    else:
        try:
            line = head[:end].decode(encoding)
        except UnicodeDecodeError:
            decode_bytes(data, file)  # raises, naming the line and byte offset
            line = head[:end].decode(encoding, errors="replace")
    if not line.strip():
        raise InputError("the file is empty: expected a header line", file=file, row=1)
    try:
        raw_names = next(csv.reader(io.StringIO(line, newline=""), strict=True))
    except csv.Error as error:
        raise InputError(f"malformed header line: {error}", file=file, row=1) from None
    names = [unicodedata.normalize("NFKC", name).strip().lower() for name in raw_names]
    seen: set[str] = set()
    for position, name in enumerate(names, start=1):
        if not name:
            raise InputError(f"header field {position} has no column name", file=file, row=1)
        if name in seen:
            raise InputError("the header names this column twice", file=file, row=1, column=name)
        seen.add(name)
    return names


def _parse_csv(
    data: bytes,
    file: str,
    pool: ThreadPoolExecutor | None = None,
    breaks: Future[_Breaks] | None = None,
) -> _Parsed:
    """Parse one CSV file's bytes: UTF-8 as is (BOM dropped), anything else as CP932.

    With a ``pool``, CP932 columns are decoded there (``resolve`` the result to wait).
    ``breaks``: the line breaks of ``data``, being counted elsewhere.
    """
    if breaks is None:
        breaks = Future()
        breaks.set_result(_line_breaks(data))
    if _looks_utf8(data):
        try:
            body = data[len(_BOM) :] if data.startswith(_BOM) else data
            return _parse(body, file, _UTF8, breaks)
        except _NotUtf8:
            pass
    return _parse(data, file, _CP932, breaks, pool)


def _parse(
    data: bytes,
    file: str,
    encoding: str,
    breaks: Future[_Breaks],
    pool: ThreadPoolExecutor | None = None,
) -> _Parsed:
    """Parse ``data`` with arrow; CP932 bytes are parsed as they are and decoded per value.

    CP932 keeps ASCII as is and its second bytes are never ``,``, ``"``, CR or LF, so the
    CSV structure of the raw bytes is the structure of the text: arrow splits the fields
    (in parallel) and only the distinct non-ASCII values of each column are decoded in
    Python, instead of the whole file being decoded and re-encoded to UTF-8.
    """
    names = _header(data, file, encoding)
    raw_bytes = encoding != _UTF8
    value_type = pa.large_binary() if raw_bytes else pa.large_string()
    # First as if no value spans lines: arrow then cuts the blocks it parses in parallel at
    # any line break, which is faster. That parse stands only if it is complete, without
    # complaint and with exactly one record per line after the header: then no line break
    # lies inside a quoted value (a cut there loses or splits a record: fewer records than
    # lines), so every cut fell between records. Otherwise (values spanning lines, blank
    # lines, errors) the careful parse decides, and its errors are the ones reported.
    invalid: list[pacsv.InvalidRow] = []

    def on_invalid(row: pacsv.InvalidRow) -> str:
        invalid.append(row)
        return "skip"

    for newlines_in_values in (False, True):
        invalid.clear()
        try:
            table = pacsv.read_csv(
                pa.BufferReader(data),
                read_options=pacsv.ReadOptions(
                    column_names=names, skip_rows=1, block_size=_BLOCK_SIZE
                ),
                parse_options=pacsv.ParseOptions(
                    newlines_in_values=newlines_in_values,
                    # a handler would get the row as UTF-8 text: raw bytes fail with an error
                    invalid_row_handler=None if raw_bytes else on_invalid,
                ),
                convert_options=pacsv.ConvertOptions(
                    column_types=dict.fromkeys(names, value_type),
                    strings_can_be_null=False,
                    quoted_strings_can_be_null=False,
                ),
            )
        except pa.ArrowInvalid as error:
            if not raw_bytes and "UTF8" in str(error):
                raise _NotUtf8 from None
            if not newlines_in_values:
                continue
            raise _malformed(data, file, encoding, len(names), str(error)) from None
        if invalid and newlines_in_values:
            raise _malformed(data, file, encoding, len(names), invalid[0].text)
        if not invalid and (newlines_in_values or breaks.result().lines == table.num_rows + 1):
            break
    rows = _line_numbers(data, file, encoding, table.num_rows, breaks.result())
    if not raw_bytes:
        return _Parsed(file, table, rows)

    def decoded() -> pa.Table:
        columns = [_decode_column(table.column(name), data, file, encoding) for name in names]
        return pa.Table.from_arrays(columns, names=names)

    if pool is None:
        return _Parsed(file, decoded(), rows)
    return _Parsed(file, table, rows, pool.submit(decoded))


def _decode_column(
    values: pa.ChunkedArray, data: bytes, file: str, encoding: str
) -> pa.ChunkedArray:
    """A ``large_binary`` column of ``encoding`` text as ``large_string``, chunk by chunk
    (``_decode_chunk``): the chunks are not joined."""
    chunks = [_decode_chunk(chunk, data, file, encoding) for chunk in values.chunks]
    return pa.chunked_array(chunks, pa.large_string())


def _decode_chunk(values: pa.Array, data: bytes, file: str, encoding: str) -> pa.Array:
    """A ``large_binary`` array of ``encoding`` text as ``large_string``.

    ASCII values are the same bytes in UTF-8 and stay where they are; the distinct other
    values are decoded once each. A value that does not decode makes the whole file's
    error (``decode_bytes``), naming its line and byte offset.
    """
    text = pa.Array.from_buffers(
        pa.large_string(), len(values), values.buffers(), values.null_count, values.offset
    )
    offsets, buffer = string_buffers(text)
    high = buffer[offsets[0] : offsets[-1]] >= 0x80
    count = int(np.count_nonzero(high))
    if count == 0:
        return text  # plain ASCII is valid UTF-8 as it stands
    if count * 4 < len(values):  # a few odd values: find their rows from their bytes
        odd = rows_holding(offsets, high)
    else:
        odd = np.flatnonzero(~pc.string_is_ascii(text).to_numpy(zero_copy_only=False))
    whole = len(odd) * 2 > len(values)
    encoded = (values if whole else values.take(pa.array(odd))).dictionary_encode()
    try:
        decoded = [value.decode(encoding) for value in encoded.dictionary.to_pylist()]
    except UnicodeDecodeError:
        decode_bytes(data, file)  # raises, naming the line and byte offset
        raise
    fixed = pa.array(decoded, pa.large_string()).take(encoded.indices)
    return fixed if whole else splice(text, odd, fixed)


def _decoded(data: bytes, file: str, encoding: str) -> str:
    """The whole text of ``data`` (rare paths: blank lines, line breaks in values, errors)."""
    if encoding == _UTF8:
        return data.decode("utf-8", errors="replace")
    return decode_bytes(data, file)


def _records(text: str, *, strict: bool = False) -> Iterator[tuple[int, list[str]]]:
    """(start line, fields) of every non-blank record, header included (slow; rare paths).

    A ``csv.Error`` comes out as ``_CsvError`` carrying the line its record starts on.
    """
    reader = csv.reader(io.StringIO(text, newline=""), strict=strict)
    end = 0
    while True:
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            raise _CsvError(end + 1, str(error)) from None
        if record:
            yield end + 1, record
        end = reader.line_num


class _CsvError(Exception):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line


@dataclass(frozen=True)
class _Breaks:
    """The line breaks in a file's bytes (the same in UTF-8 and CP932)."""

    lf: int  # LF, alone or after CR
    lone_cr: int  # CR not followed by LF: a line break too, for arrow
    final: bool  # the bytes end with a line break

    @property
    def lines(self) -> int:
        """Lines as arrow splits them (LF, CRLF or CR end one)."""
        return self.lf + self.lone_cr + (0 if self.final else 1)


def _line_breaks(data: bytes) -> _Breaks:
    """Count the line breaks of ``data``, vectorised, 1 MiB at a time (in cache)."""
    buffer = np.frombuffer(data, dtype=np.uint8)
    step = 1 << 20
    lf = cr = crlf = 0
    for begin in range(0, len(buffer), step):
        block = buffer[begin : begin + step]
        lf += int(np.count_nonzero(block == 10))
        cr_here = int(np.count_nonzero(block == 13))
        if cr_here:
            after = np.flatnonzero(block == 13) + begin + 1
            cr += cr_here
            after = after[after < len(buffer)]
            crlf += int(np.count_nonzero(buffer[after] == 10))
    return _Breaks(lf, cr - crlf, data.endswith((b"\n", b"\r")))


def _line_numbers(data: bytes, file: str, encoding: str, count: int, breaks: _Breaks) -> np.ndarray:
    lines = breaks.lf + (0 if data.endswith(b"\n") else 1)
    if lines == count + 1:  # one line per record: no quoted line breaks, no blank lines
        return np.arange(2, count + 2, dtype=np.int64)
    try:
        text = _decoded(data, file, encoding)
        starts = np.fromiter((line for line, _ in _records(text)), dtype=np.int64)[1:]
    except _CsvError:
        starts = np.zeros(0, dtype=np.int64)
    if len(starts) != count:  # the two parsers disagree: fall back to record index + 1
        return np.arange(2, count + 2, dtype=np.int64)
    return starts


def _malformed(data: bytes, file: str, encoding: str, expected: int, detail: str) -> InputError:
    """Locate the first malformed record with Python's strict csv reader (error path).

    An undecodable file is reported as such (``decode_bytes`` raises) before its CSV.
    """
    try:
        for line, record in _records(_decoded(data, file, encoding), strict=True):
            if len(record) != expected:
                return InputError(
                    f"malformed CSV line: {len(record)} fields where the header has {expected}",
                    file=file,
                    row=line,
                )
    except _CsvError as error:
        return InputError(f"malformed CSV line: {error}", file=file, row=error.line)
    return InputError(f"malformed CSV: {detail.strip()}", file=file)


def _require(parsed: _Parsed, columns: Iterable[str]) -> None:
    missing = [name for name in columns if name not in parsed.table.column_names]
    if missing:
        raise InputError(
            f"missing required column(s) {', '.join(missing)}; the header has "
            f"{', '.join(parsed.table.column_names)}",
            file=parsed.file,
            row=1,
        )


def _cohorts(parsed: _Parsed) -> pd.DataFrame:
    _require(parsed, COHORT_COLUMNS)
    codes = normalize_text(parsed.table.column("code"))
    codes = pc.utf8_lower(codes).to_pylist()
    labels = normalize_text(parsed.table.column("label")).to_pylist()
    seen: dict[str, int] = {}
    for code, row in zip(codes, parsed.rows.tolist(), strict=True):
        if code is None:
            raise InputError("empty cohort code", file=parsed.file, row=row, column="code")
        if not COHORT_CODE.fullmatch(code):
            raise InputError(
                f"cohort code {code!r} is not allowed: use lower-case letters, digits, "
                "'_' and '-', starting with a letter or digit",
                file=parsed.file,
                row=row,
                column="code",
            )
        if code in seen:
            raise InputError(
                f"cohort code {code!r} is listed twice (first on row {seen[code]})",
                file=parsed.file,
                row=row,
                column="code",
            )
        seen[code] = row
    if not codes:
        raise InputError("lists no cohort", file=parsed.file)
    return pd.DataFrame(
        {"code": pd.array(codes, dtype="str"), "label": pd.array(labels, dtype="str")}
    )


def _frame(parsed: _Parsed) -> pd.DataFrame:
    _require(parsed, FRAME_COLUMNS)
    rows = parsed.rows
    out: dict[str, object] = {}
    for name in SEGMENT_COLUMNS:
        values = normalize_text(parsed.table.column(name))
        empty = np.flatnonzero(pc.is_null(values).to_numpy(zero_copy_only=False))
        if len(empty):
            raise InputError("empty value", file=parsed.file, row=int(rows[empty[0]]), column=name)
        out[name] = values
    raw = parsed.table.column("n_physicians")
    numbers, bad = parse_numbers(raw)
    invalid = bad | np.isnan(numbers) | (numbers < 0) | (np.floor(numbers) != numbers)
    if invalid.any():
        at = int(np.flatnonzero(invalid)[0])
        raise InputError(
            f"{raw[at].as_py()!r} is not a whole number of physicians",
            file=parsed.file,
            row=int(rows[at]),
            column="n_physicians",
        )
    table = pa.table({**out, "n_physicians": pa.array(numbers.astype(np.int64))})
    keys = table.select(list(SEGMENT_COLUMNS)).to_pandas()
    repeated = np.flatnonzero(keys.duplicated().to_numpy())
    if len(repeated):
        at = int(repeated[0])
        raise InputError(
            "this specialty, region and facility_type are listed twice",
            file=parsed.file,
            row=int(rows[at]),
            column="specialty",
        )
    return table.to_pandas()


def _responses(parsed: list[_Parsed]) -> tuple[pd.DataFrame, list[str]]:
    """The response files' records as one frame, without copying their values.

    Each column is a chunked array of the files' own chunks (arrow's parse blocks), in file
    order; a column a file lacks is null over that file's chunks, so that every column is
    chunked alike. pandas keeps arrow's chunks as they are, and cleansing works chunk by
    chunk: the values are never joined into one buffer (that copy cost as much time as the
    parse, and as much memory as the values).
    """
    columns: dict[str, None] = dict.fromkeys(RESPONSE_COLUMNS)
    for item in parsed:
        columns.update(
            dict.fromkeys(n for n in item.table.column_names if n.startswith(SHARE_PREFIX))
        )
    for item in parsed:
        columns.update(dict.fromkeys(item.table.column_names))
    share_columns = [name for name in columns if name.startswith(SHARE_PREFIX)]
    names = list(columns)

    pieces: dict[str, list[pa.Array]] = {name: [] for name in [*names, *SOURCE_COLUMNS]}
    for item in parsed:
        table = _aligned(item.table)
        lengths = [len(chunk) for chunk in table.column(0).chunks]
        for name in names:
            if name in table.column_names:
                pieces[name] += table.column(name).chunks
            else:
                pieces[name] += [pa.nulls(count, pa.large_string()) for count in lengths]
        starts = np.cumsum([0, *lengths[:-1]])
        for start, count in zip(starts.tolist(), lengths, strict=True):
            pieces["source_file"].append(repeated_text(item.file, count))
            pieces["source_row"].append(pa.array(item.rows[start : start + count]))
    parsed.clear()  # the frame holds the chunks now
    types = dict.fromkeys([*names, "source_file"], pa.large_string()) | {"source_row": pa.int64()}
    arrays = [pa.chunked_array(pieces.pop(name), types[name]) for name in types]
    table = pa.Table.from_arrays(arrays, names=[*names, *SOURCE_COLUMNS])
    return table.to_pandas(split_blocks=True, self_destruct=True), share_columns


def _aligned(table: pa.Table) -> pa.Table:
    """``table`` with every column chunked alike (arrow's parse already chunks them so;
    otherwise, which does not happen, the columns are joined)."""
    layouts = {tuple(len(chunk) for chunk in column.chunks) for column in table.columns}
    return table if len(layouts) <= 1 else table.combine_chunks()
