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
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import unicodedata
from collections.abc import Iterable
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
COHORT_CODE = re.compile(r"[a-z0-9][a-z0-9_-]*")

_BOM = b"\xef\xbb\xbf"
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
    return {rel: hashlib.sha256(path.read_bytes()).hexdigest() for rel, path in _csv_files(raw_dir)}


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

    digests: dict[str, str] = {}
    tables: dict[str, _Parsed] = {}
    for rel, path in files:
        data = path.read_bytes()
        digests[rel] = hashlib.sha256(data).hexdigest()
        tables[rel] = _parse_csv(data, rel)

    cohorts = _cohorts(tables.pop(COHORTS_FILE))
    frame = _frame(tables.pop(FRAME_FILE))
    if not tables:
        raise InputError(f"no response CSV files in the raw directory {raw_dir}")
    for parsed in tables.values():
        _require(parsed, RESPONSE_COLUMNS)
    responses, share_columns = _responses(list(tables.values()))
    return RawExport(responses, cohorts, frame, share_columns, digests)


# --- normalisation shared with cleansing --------------------------------------------------


def as_text(values: pd.Series | pa.Array | pa.ChunkedArray) -> pa.Array:
    """A column as one contiguous arrow ``large_string`` array (nulls kept)."""
    if isinstance(values, pd.Series):
        values = pa.array(values, from_pandas=True)
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    if values.type != pa.large_string():
        values = pc.cast(values, pa.large_string())
    return values


def normalize_text(values: pd.Series | pa.Array | pa.ChunkedArray) -> pa.Array:
    """NFKC-normalised, whitespace-stripped text; empty values become null.

    Only the distinct non-ASCII values go through ``unicodedata`` (ASCII is NFKC-stable).
    """
    text = as_text(values)
    non_ascii = pc.invert(pc.fill_null(pc.string_is_ascii(text), True))
    if pc.any(non_ascii).as_py():
        subset = pc.filter(text, non_ascii).dictionary_encode()
        normalised = pa.array(
            [unicodedata.normalize("NFKC", s) for s in subset.dictionary.to_pylist()],
            pa.large_string(),
        )
        text = pc.replace_with_mask(text, non_ascii, normalised.take(subset.indices))
    text = pc.utf8_trim_whitespace(text)
    return pc.if_else(pc.greater(pc.binary_length(text), 0), text, pa.scalar(None, text.type))


def parse_numbers(values: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Parse normalised text (see ``normalize_text``) as decimal numbers.

    Accepts ``[+-]digits[.digits]``, with thousands separators only in groups of three
    (``1,200``; ``1,2`` is refused) and spaces anywhere inside (``1 200``). Returns
    ``(numbers, bad)``: float64 with NaN where the value is null or does not parse, and a
    bool mask of the values that are present but do not parse.
    """
    text = values
    if pc.any(pc.match_substring(text, " ")).as_py():
        text = pc.replace_substring(text, " ", "")
    ok = pc.fill_null(pc.match_substring_regex(text, _PLAIN_NUMBER), False)
    present = pc.is_valid(text)
    if not pc.all(pc.or_(ok, pc.invert(present))).as_py():
        grouped = pc.fill_null(pc.match_substring_regex(text, _GROUPED_NUMBER), False)
        if pc.any(grouped).as_py():
            text = pc.if_else(grouped, pc.replace_substring(text, ",", ""), text)
            ok = pc.or_(ok, grouped)
    numbers = pc.cast(pc.if_else(ok, text, pa.scalar(None, text.type)), pa.float64())
    bad = pc.and_(present, pc.invert(ok))
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


def _utf8(data: bytes, file: str) -> tuple[bytes, str | None]:
    """UTF-8 bytes for arrow (BOM dropped, CP932 transcoded) and the text if it was built."""
    try:
        data.decode("utf-8")  # validation only: arrow parses the bytes themselves
    except UnicodeDecodeError:
        text = decode_bytes(data, file)
        return text.encode("utf-8"), text
    return (data[len(_BOM) :] if data.startswith(_BOM) else data), None


def _header(utf8: bytes, file: str) -> list[str]:
    head = utf8[: 1 << 16]
    end = 0
    while True:  # the first line break outside quotes ends the header
        nl = head.find(b"\n", end)
        if nl < 0:
            end = len(head)
            break
        end = nl + 1
        if head.count(b'"', 0, nl) % 2 == 0:
            break
    line = head[:end].decode("utf-8", errors="replace")
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


def _parse_csv(data: bytes, file: str) -> _Parsed:
    utf8, text = _utf8(data, file)
    names = _header(utf8, file)
    invalid: list[pacsv.InvalidRow] = []

    def on_invalid(row: pacsv.InvalidRow) -> str:
        invalid.append(row)
        return "skip"

    try:
        table = pacsv.read_csv(
            pa.BufferReader(utf8),
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=1),
            parse_options=pacsv.ParseOptions(
                newlines_in_values=True, invalid_row_handler=on_invalid
            ),
            convert_options=pacsv.ConvertOptions(
                column_types={name: pa.large_string() for name in names},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid as error:
        raise _malformed(utf8, text, file, len(names), str(error)) from None
    if invalid:
        raise _malformed(utf8, text, file, len(names), invalid[0].text)
    return _Parsed(file, table, _line_numbers(utf8, text, table.num_rows))


def _records(utf8: bytes, text: str | None) -> Iterable[tuple[int, list[str]]]:
    """(start line, fields) of every non-blank record, header included (slow; rare paths)."""
    if text is None:
        text = utf8.decode("utf-8")
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    end = 0
    for record in reader:
        if record:
            yield end + 1, record
        end = reader.line_num


def _line_numbers(utf8: bytes, text: str | None, count: int) -> np.ndarray:
    lines = utf8.count(b"\n") + (0 if utf8.endswith(b"\n") else 1)
    if lines == count + 1:  # one line per record: no quoted line breaks, no blank lines
        return np.arange(2, count + 2, dtype=np.int64)
    starts = np.fromiter((line for line, _ in _records(utf8, text)), dtype=np.int64)[1:]
    if len(starts) != count:  # the two parsers disagree: fall back to record index + 1
        return np.arange(2, count + 2, dtype=np.int64)
    return starts


def _malformed(utf8: bytes, text: str | None, file: str, expected: int, detail: str) -> InputError:
    line = 1
    try:
        for line, record in _records(utf8, text):
            if len(record) != expected:
                return InputError(
                    f"malformed CSV line: {len(record)} fields where the header has {expected}",
                    file=file,
                    row=line,
                )
    except csv.Error as error:
        return InputError(f"malformed CSV line: {error}", file=file, row=line + 1)
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
    numbers, bad = parse_numbers(normalize_text(raw))
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
    columns: dict[str, None] = dict.fromkeys(RESPONSE_COLUMNS)
    for item in parsed:
        columns.update(
            dict.fromkeys(n for n in item.table.column_names if n.startswith(SHARE_PREFIX))
        )
    for item in parsed:
        columns.update(dict.fromkeys(item.table.column_names))
    share_columns = [name for name in columns if name.startswith(SHARE_PREFIX)]
    names = list(columns)
    tables = []
    for item in parsed:
        n = item.table.num_rows
        arrays = [
            item.table.column(name)
            if name in item.table.column_names
            else pa.nulls(n, pa.large_string())
            for name in names
        ]
        source = pa.DictionaryArray.from_arrays(
            pa.array(np.zeros(n, dtype=np.int32)), pa.array([item.file], pa.large_string())
        ).cast(pa.large_string())
        arrays += [source, pa.array(item.rows)]
        tables.append(pa.Table.from_arrays(arrays, names=[*names, "source_file", "source_row"]))
    return pa.concat_tables(tables).to_pandas(), share_columns
