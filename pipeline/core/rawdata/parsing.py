"""Parsing one CSV file's bytes with arrow (header, records, line numbers, errors).

Arrow parses every file on all cores, first as if no value spans lines (it may then cut
blocks at any line break; the careful parse takes over whenever that does not hold
exactly). Each parse block is one chunk of the columns; the chunks are never joined.
"""

from __future__ import annotations

import csv
import io
import unicodedata
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from pipeline.core.rawdata.encoding import (
    NotUtf8,
    decode_bytes,
    decode_column,
    decoded_text,
    looks_utf8,
)
from pipeline.core.rawdata.schema import BOM, CP932, UTF8
from pipeline.errors import InputError

_BLOCK_SIZE = 8 << 20  # arrow parses blocks in parallel; each is a chunk of the frame


@dataclass
class Parsed:
    file: str
    table: pa.Table  # columns named by normalised header, all large_string
    rows: np.ndarray  # int64 line numbers of the records
    pending: Future[pa.Table] | None = None  # the table, while a helper still decodes it

    def resolve(self) -> None:
        if self.pending is not None:
            self.table, self.pending = self.pending.result(), None


def _header(data: bytes | memoryview, file: str, encoding: str) -> list[str]:
    head = bytes(data[: 1 << 16])
    end = 0
    while True:  # the first line break outside quotes ends the header
        nl = head.find(b"\n", end)
        if nl < 0:
            end = len(head)
            break
        end = nl + 1
        if head.count(b'"', 0, nl) % 2 == 0:
            break
    if encoding == UTF8:
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


def parse_csv(
    data: bytes | memoryview,
    file: str,
    pool: ThreadPoolExecutor | None = None,
    breaks: Future[Breaks] | None = None,
) -> Parsed:
    """Parse one CSV file's bytes: UTF-8 as is (BOM dropped), anything else as CP932.

    With a ``pool``, CP932 columns are decoded there (``resolve`` the result to wait).
    ``breaks``: the line breaks of ``data``, being counted elsewhere.
    """
    if breaks is None:
        breaks = Future()
        breaks.set_result(line_breaks(data))
    if looks_utf8(data):
        try:
            body = data[len(BOM) :] if data[: len(BOM)] == BOM else data
            return _parse(body, file, UTF8, breaks)
        except NotUtf8:
            pass
    return _parse(data, file, CP932, breaks, pool)


def _parse(
    data: bytes | memoryview,
    file: str,
    encoding: str,
    breaks: Future[Breaks],
    pool: ThreadPoolExecutor | None = None,
) -> Parsed:
    """Parse ``data`` with arrow; CP932 bytes are parsed as they are and decoded per value.

    CP932 keeps ASCII as is and its second bytes are never ``,``, ``"``, CR or LF, so the
    CSV structure of the raw bytes is the structure of the text: arrow splits the fields
    (in parallel) and only the distinct non-ASCII values of each column are decoded in
    Python, instead of the whole file being decoded and re-encoded to UTF-8.
    """
    names = _header(data, file, encoding)
    raw_bytes = encoding != UTF8
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
                raise NotUtf8 from None
            if not newlines_in_values:
                continue
            raise _malformed(data, file, encoding, len(names), str(error)) from None
        if invalid and newlines_in_values:
            raise _malformed(data, file, encoding, len(names), invalid[0].text)
        if not invalid and (newlines_in_values or breaks.result().lines == table.num_rows + 1):
            break
    rows = _line_numbers(data, file, encoding, table.num_rows, breaks.result())
    if not raw_bytes:
        return Parsed(file, table, rows)

    def decoded() -> pa.Table:
        columns = [decode_column(table.column(name), data, file, encoding) for name in names]
        return pa.Table.from_arrays(columns, names=names)

    if pool is None:
        return Parsed(file, decoded(), rows)
    return Parsed(file, table, rows, pool.submit(decoded))


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
class Breaks:
    """The line breaks in a file's bytes (the same in UTF-8 and CP932)."""

    lf: int  # LF, alone or after CR
    lone_cr: int  # CR not followed by LF: a line break too, for arrow
    final: bool  # the bytes end with a line break

    @property
    def lines(self) -> int:
        """Lines as arrow splits them (LF, CRLF or CR end one)."""
        return self.lf + self.lone_cr + (0 if self.final else 1)


def line_breaks(data: bytes | memoryview) -> Breaks:
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
    return Breaks(lf, cr - crlf, bool(len(buffer)) and int(buffer[-1]) in (10, 13))


def _line_numbers(
    data: bytes | memoryview, file: str, encoding: str, count: int, breaks: Breaks
) -> np.ndarray:
    lines = breaks.lf + (0 if data[-1:] == b"\n" else 1)
    if lines == count + 1:  # one line per record: no quoted line breaks, no blank lines
        return np.arange(2, count + 2, dtype=np.int64)
    try:
        text = decoded_text(data, file, encoding)
        starts = np.fromiter((line for line, _ in _records(text)), dtype=np.int64)[1:]
    except _CsvError:
        starts = np.zeros(0, dtype=np.int64)
    if len(starts) != count:  # the two parsers disagree: fall back to record index + 1
        return np.arange(2, count + 2, dtype=np.int64)
    return starts


def _malformed(
    data: bytes | memoryview, file: str, encoding: str, expected: int, detail: str
) -> InputError:
    """Locate the first malformed record with Python's strict csv reader (error path).

    An undecodable file is reported as such (``decode_bytes`` raises) before its CSV.
    """
    try:
        for line, record in _records(decoded_text(data, file, encoding), strict=True):
            if len(record) != expected:
                return InputError(
                    f"malformed CSV line: {len(record)} fields where the header has {expected}",
                    file=file,
                    row=line,
                )
    except _CsvError as error:
        return InputError(f"malformed CSV line: {error}", file=file, row=error.line)
    return InputError(f"malformed CSV: {detail.strip()}", file=file)
