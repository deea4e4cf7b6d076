"""Reading the response files in record batches, so that memory stays bounded.

``ExportStream`` reads ``cohorts.csv``, ``frame.csv`` (small: whole, as
``read_raw_export`` does) and every response file's header at once; ``batches`` then
yields the response records in order, a batch (about ``BATCH_BYTES`` of the file) at a
time, with the columns of every file aligned (``RawExport.responses``' column order; null
where a file lacks a column). Arrow's streaming reader parses in a thread of its own, one
batch ahead of the consumer; a helper thread hashes each file and counts its line breaks
from its own block-wise reads. Nothing holds a whole file: no mapping, no joined column.

Values are the same as ``read_raw_export``'s: decoded strings as delivered, ``""`` for
an empty field. A file is read as UTF-8 when its start is UTF-8; if arrow finds invalid
UTF-8 later, the file is read again as CP932 and ``batches`` first yields a ``Batch``
without a table (``restart``): the consumer drops what it had of that file. Errors are the
same ``InputError``s (the error paths read the whole file to name the line).

``source_row``: a batch carries the index of its first record in its file; once a file
has been read, ``line_numbers`` turns record indexes into line numbers (the header being
line 1). One line per record is the rule (checked against the counted line breaks); a
file with line breaks inside values or blank lines has its lines counted by Python's csv
reader, streaming, only then.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import mmap
import queue
import threading
from collections.abc import Collection, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from pipeline.core.rawdata.discovery import csv_files, file_bytes
from pipeline.core.rawdata.encoding import decode_bytes, decode_chunk, looks_utf8
from pipeline.core.rawdata.export import _cohorts, _frame, special_files
from pipeline.core.rawdata.parsing import _header, _malformed, parse_csv
from pipeline.core.rawdata.schema import (
    BOM,
    COHORTS_FILE,
    CP932,
    FRAME_FILE,
    RESPONSE_COLUMNS,
    SHARE_PREFIX,
    UTF8,
)
from pipeline.errors import InputError

BATCH_BYTES = 4 << 20  # of a file per batch: ~30k rows of a typical export
_SCAN_BYTES = 4 << 20  # hashing and counting line breaks, a block at a time


@dataclass
class Batch:
    """Records ``start``.. of response file ``file`` (an index into ``ExportStream.files``);
    ``table`` is None for a restart (the file is read again from its start)."""

    file: int
    table: pa.Table | None
    start: int = 0

    @property
    def restart(self) -> bool:
        return self.table is None


@dataclass
class ResponseFile:
    rel: str
    path: Path
    names: list[str]
    records: int = 0
    encoding: str = UTF8
    rows: np.ndarray | None = None  # line numbers when not one line per record
    scan: Future[tuple[str, int, int]] | None = field(default=None, repr=False)


class ExportStream:
    """A raw export read a batch at a time (see the module docstring).

    After construction: ``cohorts`` and ``frame`` (as ``RawExport`` has them),
    ``columns`` (every response column, in ``RawExport.responses``' order, without the
    source columns), ``share_columns`` and ``files`` (the response files). ``checksums``
    is complete once ``batches`` has run to its end. Raises the ``InputError``s of
    ``read_raw_export`` (a malformed record or undecodable byte: when its batch is read).
    """

    def __init__(self, raw_dir: Path) -> None:
        files = csv_files(raw_dir)
        special_files(raw_dir, {rel for rel, _ in files})
        paths = dict(files)
        self.cohorts = _cohorts(parse_csv(file_bytes(paths[COHORTS_FILE]), COHORTS_FILE))
        self.frame = _frame(parse_csv(file_bytes(paths[FRAME_FILE]), FRAME_FILE))
        self.files = [
            ResponseFile(rel, path, _names(path, rel))
            for rel, path in files
            if rel not in (COHORTS_FILE, FRAME_FILE)
        ]
        if not self.files:
            raise InputError(f"no response CSV files in the raw directory {raw_dir}")
        for item in self.files:
            missing = [name for name in RESPONSE_COLUMNS if name not in item.names]
            if missing:
                for other in self.files:  # an unreadable file is the first error, as before
                    parse_csv(file_bytes(other.path), other.rel)
                raise InputError(
                    f"missing required column(s) {', '.join(missing)}; the header has "
                    f"{', '.join(item.names)}",
                    file=item.rel,
                    row=1,
                )
        columns: dict[str, None] = dict.fromkeys(RESPONSE_COLUMNS)
        for item in self.files:
            columns.update(dict.fromkeys(n for n in item.names if n.startswith(SHARE_PREFIX)))
        for item in self.files:
            columns.update(dict.fromkeys(item.names))
        self.columns = list(columns)
        self.share_columns = [name for name in self.columns if name.startswith(SHARE_PREFIX)]
        self._special = {rel: path for rel, path in files if rel in (COHORTS_FILE, FRAME_FILE)}
        self.checksums: dict[str, str] = {}

    def batches(self, dictionary: Collection[str] = ()) -> Iterator[Batch]:
        """The response records, file after file, a batch at a time (see the class). The
        ``dictionary`` columns come dictionary-encoded (the same values, each distinct one
        stored once per batch: for columns of few values, such as categories)."""
        with ThreadPoolExecutor(max_workers=1) as helper:
            scans = {rel: helper.submit(_scan, path) for rel, path in self._special.items()}
            for item in self.files:
                item.scan = helper.submit(_scan, item.path)
            yield from _ahead(self._batches(frozenset(dictionary)))
            digests = {rel: job.result()[0] for rel, job in scans.items()}
            digests |= {item.rel: item.scan.result()[0] for item in self.files}  # type: ignore[union-attr]
        self.checksums = {rel: digests[rel] for rel in sorted(digests)}

    def _batches(self, dictionary: frozenset[str]) -> Iterator[Batch]:
        for index, item in enumerate(self.files):
            with open(item.path, "rb") as fh:
                start = fh.read(1 << 16)
            encodings = (UTF8, CP932) if looks_utf8(start) else (CP932,)
            for encoding in encodings:
                item.encoding, item.records = encoding, 0
                try:
                    for table in _read(item, encoding, dictionary):
                        yield Batch(index, self._aligned(table), item.records)
                        item.records += table.num_rows
                    break
                except _NotUtf8:
                    yield Batch(index, None)
            self._count_lines(item)

    def _aligned(self, table: pa.Table) -> pa.Table:
        n = table.num_rows
        arrays = [
            table.column(name) if name in table.column_names else pa.nulls(n, pa.large_string())
            for name in self.columns
        ]
        return pa.Table.from_arrays(arrays, names=self.columns)

    def _count_lines(self, item: ResponseFile) -> None:
        _, lines, _ = item.scan.result()  # type: ignore[union-attr]
        if lines == item.records + 1:  # one line per record: no line breaks in values
            item.rows = None
            return
        item.rows = _record_lines(item)
        if len(item.rows) != item.records:  # the two parsers disagree: record index + 1
            item.rows = None

    def line_numbers(self, file: int, records: np.ndarray) -> np.ndarray:
        """Line numbers of ``records`` (indexes into the file's records) of a file read."""
        rows = self.files[file].rows
        return records + 2 if rows is None else rows[records]


def _names(path: Path, rel: str) -> list[str]:
    data = file_bytes(path)
    if len(data) == 0:
        raise InputError("the file is empty: expected a header line", file=rel, row=1)
    if not looks_utf8(data):
        return _header(data, rel, CP932)
    return _header(data[len(BOM) :] if data[: len(BOM)] == BOM else data, rel, UTF8)


class _NotUtf8(Exception):
    pass


def _read(item: ResponseFile, encoding: str, dictionary: frozenset[str]) -> Iterator[pa.Table]:
    """The records of one response file, a batch at a time, as ``large_string`` columns
    (``dictionary``: dictionary-encoded ones; arrow's reader encodes them as it converts,
    at no more cost than making their text)."""
    raw_bytes = encoding != UTF8
    value_type = pa.large_binary() if raw_bytes else pa.large_string()
    types = {
        name: pa.dictionary(pa.int32(), value_type) if name in dictionary else value_type
        for name in item.names
    }
    source, mapped = _mapped(item.path)
    try:
        reader = pacsv.open_csv(
            source,
            read_options=pacsv.ReadOptions(
                column_names=item.names, skip_rows=1, block_size=BATCH_BYTES
            ),
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types=types,
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
        for batch in reader:
            if mapped is not None:  # the pages parsed so far leave this process's memory
                mapped.madvise(mmap.MADV_DONTNEED)
            table = pa.Table.from_batches([batch])
            if raw_bytes:
                table = _decoded(table, item)
            yield table
    except pa.ArrowInvalid as error:
        if "Empty CSV file" in str(error):
            return  # the header alone (the reader found nothing after it)
        if not raw_bytes and "UTF8" in str(error):
            raise _NotUtf8 from None
        data = file_bytes(item.path)
        raise _malformed(data, item.rel, encoding, len(item.names), str(error)) from None


def _mapped(path: Path) -> tuple[pa.BufferReader | str, mmap.mmap | None]:
    """What arrow's reader reads a response file from: a memory map of it where the system
    has ``madvise``, else its path. Read from its path, arrow read up to 32 MiB of the file
    ahead into memory of its own (the largest part of pass 1's memory at 4 MiB batches);
    mapped, its reads are views of the page cache, and ``_read`` drops the mapped pages
    from the process after each batch (a page parsed again, read ahead, comes back from
    the page cache)."""
    if not hasattr(mmap, "MADV_DONTNEED"):
        return str(path), None
    try:
        with open(path, "rb") as handle:
            mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError):  # empty, or on a file system that cannot map it
        return str(path), None
    return pa.BufferReader(pa.py_buffer(mapped)), mapped


def _decoded(table: pa.Table, item: ResponseFile) -> pa.Table:
    try:
        columns = [_decoded_chunk(column.chunk(0)) for column in table.columns]
    except UnicodeDecodeError:
        decode_bytes(file_bytes(item.path), item.rel)  # raises, naming the line and offset
        raise
    return pa.Table.from_arrays(columns, names=table.column_names)


def _decoded_chunk(values: pa.Array) -> pa.Array:
    """``decode_chunk`` of CP932 values; of a dictionary-encoded column, its distinct values."""
    if pa.types.is_dictionary(values.type):
        return pa.DictionaryArray.from_arrays(
            values.indices, decode_chunk(values.dictionary, CP932)
        )
    return decode_chunk(values, CP932)


def _scan(path: Path) -> tuple[str, int, int]:
    """sha256 (hex) of a file, its lines as arrow splits them (LF, CRLF or a lone CR end
    one) and its LF count, read a block at a time."""
    digest = hashlib.sha256()
    lf = cr = crlf = 0
    previous = b""
    last = b""
    with open(path, "rb") as fh:
        while block := fh.read(_SCAN_BYTES):
            digest.update(block)
            buffer = np.frombuffer(block, dtype=np.uint8)
            lf += int(np.count_nonzero(buffer == 10))
            at = np.flatnonzero(buffer == 13)
            cr += len(at)
            after = at[at + 1 < len(buffer)] + 1
            crlf += int(np.count_nonzero(buffer[after] == 10))
            if previous == b"\r" and block[:1] == b"\n":
                crlf += 1
            previous = last = block[-1:]
    final = last in (b"\n", b"\r")
    lines = lf + (cr - crlf) + (0 if final else 1)
    return digest.hexdigest(), lines, lf


def _record_lines(item: ResponseFile) -> np.ndarray:
    """The line each record starts on, by Python's csv reader (rare: line breaks inside
    values or blank lines), the file streamed."""
    encoding = "utf-8-sig" if item.encoding == UTF8 else item.encoding
    with open(item.path, "rb") as fh:
        text = io.TextIOWrapper(fh, encoding=encoding, errors="replace", newline="")
        reader = csv.reader(text)
        starts, end = [], 0
        try:
            for record in reader:
                if record:
                    starts.append(end + 1)
                end = reader.line_num
        except csv.Error:
            return np.zeros(0, dtype=np.int64)
    return np.array(starts[1:], dtype=np.int64)


_DONE = object()


def _ahead(batches: Iterator[Batch]) -> Iterator[Batch]:
    """``batches``, produced in a thread one batch ahead (arrow parses without the GIL,
    while the consumer works on the batch before)."""
    handoff: queue.Queue[object] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def produce() -> None:
        try:
            for batch in batches:
                while not stop.is_set():
                    try:
                        handoff.put(batch, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            handoff.put(_DONE)
        except BaseException as error:  # handed to the consumer, raised there
            handoff.put(error)

    thread = threading.Thread(target=produce, name="export-reader", daemon=True)
    thread.start()
    try:
        while (item := handoff.get()) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        while thread.is_alive():  # let a blocked producer finish
            with contextlib.suppress(queue.Empty):
                handoff.get(timeout=0.1)
        thread.join()
