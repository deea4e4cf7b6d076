"""Cleansing a raw export a batch at a time: memory bounded by the batch, not the export.

``cleanse_stream`` gives the same rows, rejections and summary as
``cleanse(read_raw_export(raw_dir), ...)`` (the reference; tests compare the two), written
to a ``Sink`` as they are made instead of returned:

1. Every batch of ``ExportStream.batches`` (the category columns read
   dictionary-encoded) is parsed and judged by the same functions as ``cleanse``
   (``parse_columns``, ``RULES``). Its rejected rows are final; its other rows are
   eligible, but ``duplicate`` needs the whole export. Both go to a spill directory
   (arrow IPC, uncompressed, four files per response file, each batch an IPC stream of
   its own): the rejected rows without their raw JSON (``_rejected``), the eligible rows
   as what their cleansed columns are made of (``_eligible``, ``_share_cells``: category
   indices, the hash's halves, the answered share cells), the batch's raw values as
   parsed (for the raw JSON); and so do the eligible rows' keys: what
   ``duplicate`` and the summary need (the keyed hash, 16 bytes; the cohort, a byte for
   up to 256 cohorts; ``submitted_at``; a bit per share column answered), a raw file per
   key.
2. ``duplicate`` is decided on those keys, read back whole, one array per key
   (``latest_only``, as in ``cleanse``); then the spill is read back a batch at a time
   (a memory map of the batch's bytes: no copy): the cleansed columns of the rows that
   stay are made (``_Kept``, ``cleanse``'s values) and go to their cohort, the superseded
   ones become ``duplicate`` rejections, merged in export order with the batch's other
   rejections, and all of them get their raw JSON from the spilled raw values
   (``_rejections``, ``raw_json`` as in ``cleanse``).

Both passes use every core: up to ``workers`` batches (one per core unless told) are
judged, and in pass 2 split, at once on a thread pool (arrow and numpy release the GIL),
each batch's columns one after another in its thread; what they make is spilled and
written in the order read, so the spill and the outputs are the same, byte for byte,
whatever ``workers`` is. The CSV parse stays one thread (one batch ahead), and so do the
spill's writes, the read-back of the spill and the ``duplicate`` decision between the
passes.

Memory is ``workers`` batches and a few more, and between the two passes the keys (27
bytes an eligible row with 16 share columns) and their sort: the export's size counts
only through the keys.
Line numbers (``source_row``) are known once a file has been read
(``ExportStream.line_numbers``): the spill holds record indexes, turned into line numbers
when read back.
"""

from __future__ import annotations

import ctypes
import mmap
import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.core.cleanse import cohort_codes, parse_columns
from pipeline.core.cleanse.contract import (
    CLEANSED_COLUMNS,
    REASONS,
    REJECTION_COLUMNS,
    SOURCE_COLUMNS,
    TIMESTAMP_TYPE,
    CleanseRules,
)
from pipeline.core.cleanse.output import (
    patients_column,
    raw_json,
    reason_column,
    timestamp_column,
)
from pipeline.core.cleanse.respondents import hex_text, latest_only
from pipeline.core.cleanse.rules import RULES, reason_bits
from pipeline.core.cleanse.values import Parsed
from pipeline.core.rawdata import repeated_text, take_rows
from pipeline.core.rawdata.stream import Batch, ExportStream
from pipeline.errors import ConfigError

REJECTIONS = "rejections"
# The spill takes about 2.3x the export's size on disk, most of it the raw values with
# their offsets (4x when the eligible rows were spilled as cleansed, every share column a
# float64, and the category columns as text, 5x with the 64-bit offsets it had until
# 2026-12-06); compression="lz4" cut the 4x to about 1.7x for about a tenth more time
# (the 1 M-row sample export, 2 cores).
SPILL_OPTIONS = pa.ipc.IpcWriteOptions(compression=None)
_SPILLS = ("rejected", "eligible", "shares", "raw")  # arrow IPC, per response file
_POSITION = "_position"  # a row's place in its batch (merging the rejections)


def cohort_output(code: str) -> str:
    """The sink name of a cohort's cleansed rows."""
    return f"cohorts/{code}"


class Sink(Protocol):
    """Where ``cleanse_stream`` writes: every output is opened once, with its schema, before
    any rows are written to it (a cohort without rows is opened and never written)."""

    def open(self, name: str, schema: pa.Schema) -> None: ...

    def write(self, name: str, table: pa.Table) -> None: ...


@dataclass
class _File:
    """What pass 1 keeps of one response file: its spill (the eligible rows' keys too, a
    file per key) and its counts."""

    rejected: Path
    eligible: Path
    shares: Path
    raw: Path
    keys: _KeyFiles
    spills: tuple[_SpillStream, ...] = ()  # rejected, eligible, shares, raw: once opened
    rows: int = 0
    eligible_rows: int = 0
    batches: int = 0
    starts: list[int] = field(default_factory=list)  # each batch's first record
    counts: np.ndarray | int = 0  # rows per cohort (last: none)
    flagged: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REASONS, 0))

    def add(self, judged: _Judged) -> None:
        """Adds one judged batch of the file: its keys to the key spill, its rows to the counts."""
        self.keys.append(judged.keys)
        self.eligible_rows += len(judged.keys["first"])
        self.batches += 1
        self.starts.append(judged.start)
        self.rows += judged.rows
        self.counts = self.counts + judged.counts
        for reason, count in judged.flagged.items():
            self.flagged[reason] += count


def default_workers() -> int:
    """Batches judged at once when ``cleanse_stream`` is not told: one per core."""
    return os.cpu_count() or 1


def cleanse_stream(
    stream: ExportStream,
    rules: CleanseRules,
    key: bytes,
    sink: Sink,
    spill: Path,
    workers: int | None = None,
) -> dict[str, Any]:
    """Cleanse ``stream`` into ``sink`` (``cohort_output(code)`` per cohort, in
    ``stream.cohorts`` order, and ``REJECTIONS``), using the empty directory ``spill`` for
    scratch; returns the summary (``CleanseResult.summary``). ``workers`` batches are
    judged (and, in pass 2, split) at once, on as many threads (default: one per core,
    ``default_workers``); the spill, the outputs and the summary are the same, byte for
    byte, whatever their number. See the module docstring."""
    if not key:
        raise ConfigError("the respondent hashing key is empty: set it in the environment")
    workers = default_workers() if workers is None else workers
    if workers < 1:
        raise ConfigError(f"cleansing needs at least one worker thread, not {workers}")
    with _memory_pool():
        return _cleanse(stream, rules, key, sink, spill, workers)


def _cleanse(
    stream: ExportStream, rules: CleanseRules, key: bytes, sink: Sink, spill: Path, workers: int
) -> dict[str, Any]:
    codes = cohort_codes(stream.cohorts)
    layout = _key_layout(len(codes), len(stream.share_columns))
    files = _spill_judged(stream, codes, rules, key, spill, layout, workers)
    order = sorted(files)
    # between the passes: ``duplicate`` on the keys of the whole export
    keys = _read_keys([files[i] for i in order], layout)
    superseded = _superseded(keys)
    staying = ~superseded
    cleansed_rows = np.bincount(keys["cohort"][staying], minlength=len(codes))
    answered = _answered(keys, staying, len(codes), len(stream.share_columns))
    schemas = [_cohort_schema(stream.share_columns, answered[i]) for i in range(len(codes))]
    del keys["first"], keys["second"], keys["submitted"], keys["answered"]
    _trim()
    _write_outputs(stream, files, order, keys["cohort"], superseded, codes, schemas, sink, workers)
    return _summary(stream, codes, [files[i] for i in order], superseded, cleansed_rows, answered)


# jemalloc hands freed pages back to the system after this long (arrow's default: 1 s, in
# which pass 1 judges a few dozen batches whose freed pages stayed resident)
_DECAY_MS = 100


@contextmanager
def _memory_pool() -> Iterator[None]:
    """Arrow allocates from jemalloc while cleansing, where this arrow has it. Its default,
    mimalloc, keeps the pages of freed blocks for reuse by the thread that freed them:
    with batches judged on several threads the resident memory grew by a batch's working
    set per thread. Measured on the 1 M-row sample export (128 MiB), 2 threads, a fresh
    process each, 3 runs: peak RSS 494-552 MiB with mimalloc, 408-488 with jemalloc,
    352-449 with the system allocator, which took 10-15 % more CPU than jemalloc
    (docs/benchmarks.md). jemalloc's freed pages go back to the system after ``_DECAY_MS``
    (1 M rows, 3 runs each: peak RSS 380-412 MiB with 100 ms, 430-540 with arrow's 1 s;
    0 ms, at once, 365-399 at 10-20 % more CPU)."""
    try:
        pool = pa.jemalloc_memory_pool()
    except NotImplementedError:  # an arrow built without it: its default
        yield
        return
    pa.jemalloc_set_decay_ms(_DECAY_MS)
    previous = pa.default_memory_pool()
    pa.set_memory_pool(pool)
    try:
        yield
    finally:
        pa.set_memory_pool(previous)


def _give_back() -> None:
    """Gives the memory of the batches done back to the system (after each batch): arrow's
    allocator keeps freed blocks for reuse, so that the batches' memory would add up."""
    pa.default_memory_pool().release_unused()


def _trim() -> None:
    """Gives the C allocator's free pages back to the system, where it is glibc's (numpy
    allocates from it, and its per-thread arenas kept what pass 1's judging freed: 40 MiB
    at 1 M rows); once, between the passes (after every batch it cost pass 1 much time)."""
    try:
        libc = ctypes.CDLL(None)
    except (OSError, TypeError):  # no C library to load this way
        return
    if hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


def _spill_judged(
    stream: ExportStream,
    codes: pa.Array,
    rules: CleanseRules,
    key: bytes,
    spill: Path,
    layout: dict[str, tuple[np.dtype, int]],
    workers: int,
) -> dict[int, _File]:
    """Pass 1: reads every batch of ``stream``, judges it by every rule but ``duplicate``
    and spills its rejections, eligible rows, raw values and keys; returns each response
    file's spill and counts (a file read again from its start begins a new spill).

    Up to ``workers`` batches are judged at once, each by one thread of a pool (arrow and
    numpy release the GIL); the judged batches are spilled in the order they were read, so
    the spill is the same whatever ``workers`` is. A batch waits to be judged only while
    ``workers`` batches are: the memory is that many batches, not the export."""
    files: dict[int, _File] = {}
    writers: dict[int, tuple[pa.ipc.RecordBatchStreamWriter, ...]] = {}
    judging: deque[tuple[Batch, Future[_Judged]]] = deque()  # in the order read
    inline = _Inline()  # a batch's column work runs in its own worker, one after another
    # the spill is written by this thread, while the workers judge the next batches (in a
    # thread of its own, a batch more was held: 18 MiB at the peak of the memory)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cleanse-judge") as judges:

        def spill_oldest() -> None:
            batch, job = judging.popleft()
            judged = job.result()
            part = files[batch.file]
            if batch.file not in writers:
                writers[batch.file] = part.spills = _spill_writers(part)
            # the raw values as parsed
            pieces = (judged.rejected, judged.eligible, judged.shares, batch.table)
            for writer, piece in zip(writers[batch.file], pieces, strict=True):
                writer.write_batch(_one_batch(piece))
            part.add(judged)

        try:
            for batch in stream.batches(dictionary=_DICTIONARY_COLUMNS):
                if batch.restart:  # the file again from its start: what was judged goes
                    while judging:
                        spill_oldest()
                    for writer in writers.pop(batch.file, ()):
                        writer.close()
                    files[batch.file].keys.close()
                    del files[batch.file]
                    continue
                if batch.file not in files:
                    files[batch.file] = _File(
                        *(spill / f"{batch.file}.{kind}" for kind in _SPILLS),
                        keys=_KeyFiles(spill / f"{batch.file}.keys", layout),
                    )
                while len(judging) >= workers:
                    spill_oldest()
                    _give_back()
                job = judges.submit(_judge, batch, stream, codes, rules, key, inline)
                judging.append((batch, job))
            while judging:
                spill_oldest()
        finally:
            for job in judging:  # an error: what is still queued need not run
                job[1].cancel()
        for pair in writers.values():
            for writer in pair:
                writer.close()
        for part in files.values():
            part.keys.close()
    return files


class _Inline(Executor):
    """An executor that runs every job at once in the caller's thread: ``parse_columns``
    takes an executor for its independent columns; in pass 1 a whole
    batch is one job of the batch pool, and its columns run one after another in it."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as error:
            future.set_exception(error)
        return future


class _SpillStream:
    """One spill file, written a batch at a time, each batch an arrow IPC stream of its own
    (its schema, dictionaries and record batch): pass 2 maps just that batch's bytes
    (``batch``), and a batch's dictionaries (the category columns' distinct values) are
    its own."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sink = pa.OSFile(str(path), "wb")
        self.ranges: list[tuple[int, int]] = []  # each batch's bytes

    def write_batch(self, batch: pa.RecordBatch) -> None:
        # text is spilled with 32-bit offsets (a batch holds far less than 2 GiB of it): of
        # the raw values' bytes, the 64-bit offsets were two thirds
        stored = _narrow(batch.schema)
        start = self.sink.tell()
        with pa.ipc.new_stream(self.sink, stored, options=SPILL_OPTIONS) as writer:
            writer.write_batch(batch.cast(stored))  # the text's bytes are not copied
        self.ranges.append((start, self.sink.tell()))

    def close(self) -> None:
        self.sink.close()

    def batch(self, index: int, wide: bool = True) -> pa.RecordBatch:
        """Batch ``index`` as written, its buffers in a memory map of its bytes alone (no
        copy): the map is unmapped once the last array using it is dropped, so pass 2's
        resident memory is the batches it works on, not the spill files it has read (a
        map of a whole file kept every page read resident: 700 MiB at 1 M rows). With
        ``wide``, its text has 64-bit offsets again (else the spilled 32-bit ones)."""
        start, end = self.ranges[index]
        first = start - start % mmap.ALLOCATIONGRANULARITY
        with open(self.path, "rb") as handle:
            mapped = mmap.mmap(handle.fileno(), end - first, offset=first, access=mmap.ACCESS_READ)
        source = pa.py_buffer(mapped).slice(start - first)  # the buffer keeps the map alive
        batch = pa.ipc.open_stream(source).read_next_batch()
        return batch.cast(_wide(batch.schema)) if wide else batch


def _narrow(schema: pa.Schema) -> pa.Schema:
    return pa.schema([f.with_type(pa.string()) if f.type == _TEXT else f for f in schema])


def _wide(schema: pa.Schema) -> pa.Schema:
    return pa.schema([f.with_type(_TEXT) if f.type == pa.string() else f for f in schema])


def _spill_writers(part: _File) -> tuple[_SpillStream, ...]:
    """Opens a response file's spill streams (rejected, eligible, shares, raw)."""
    paths = (part.rejected, part.eligible, part.shares, part.raw)
    return tuple(_SpillStream(path) for path in paths)


def _write_outputs(
    stream: ExportStream,
    files: dict[int, _File],
    order: list[int],
    cohorts: np.ndarray,
    superseded: np.ndarray,
    codes: pa.Array,
    schemas: list[pa.Schema],
    sink: Sink,
    workers: int,
) -> None:
    """Pass 2: reads the spill back a batch at a time with each eligible row's cohort and
    ``duplicate`` decision; writes the staying rows to their cohorts' outputs and the
    rejections (the superseded rows merged in, in export order) to ``REJECTIONS``.

    The spill is read in order by this thread; up to ``workers`` read batches are split
    (``_emit``) at once on a pool, and their pieces go to the sink in the order read. The
    sink's writes (Parquet encoding, without the GIL) run on ``workers`` threads too, but
    one output's writes one after another, in order: every output gets the same pieces in
    the same order whatever ``workers`` is."""
    for code, schema in zip(codes.to_pylist(), schemas, strict=True):
        sink.open(cohort_output(code), schema)
    sink.open(REJECTIONS, REJECTION_SCHEMA)
    at = 0
    emitting: deque[Future[list[tuple[str, pa.Table]]]] = deque()  # in the order read
    writing: deque[list[Future[None]]] = deque()  # each emitted batch's writes
    last: dict[str, Future[None]] = {}  # each output's latest write
    with (
        ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cleanse-emit") as emitters,
        ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cleanse-write") as writer,
    ):

        def write_oldest() -> None:
            writes = []
            for name, table in emitting.popleft().result():
                # after the output's write before it: a job waits only on an earlier one
                last[name] = writer.submit(_after, last.get(name), sink.write, name, table)
                writes.append(last[name])
            writing.append(writes)
            while len(writing) > workers:  # bounded memory: that many batches' writes
                _wait(writing.popleft())
                _give_back()

        try:
            for i in order:
                rejected, eligible, shares, raw = files[i].spills
                for b in range(files[i].batches):
                    spilled = _Spilled(
                        files[i].starts[b],
                        eligible.batch(b, wide=False),  # the rows taken are widened
                        shares.batch(b),
                        pa.Table.from_batches([rejected.batch(b)]),
                        raw.batch(b, wide=False),  # only the duplicates' are read
                    )
                    n = spilled.eligible.num_rows
                    dropped, cohort = superseded[at : at + n], cohorts[at : at + n]
                    at += n
                    while len(emitting) >= workers:
                        write_oldest()
                    emitting.append(
                        emitters.submit(
                            _emit, stream, i, spilled, dropped, cohort, codes, schemas
                        )
                    )  # fmt: skip
            while emitting:
                write_oldest()
            while writing:
                _wait(writing.popleft())
        finally:
            for job in emitting:  # an error: what is still queued need not run
                job.cancel()


def _after(
    previous: Future[None] | None,
    write: Callable[[str, pa.Table], None],
    name: str,
    table: pa.Table,
) -> None:
    """``write(name, table)`` once ``previous`` (the output's write before) is done."""
    if previous is not None:
        previous.result()
    write(name, table)


def _summary(
    stream: ExportStream,
    codes: pa.Array,
    files: list[_File],
    superseded: np.ndarray,
    cleansed_rows: np.ndarray,
    answered: np.ndarray,
) -> dict[str, Any]:
    """Reads the files' counts (in export order), the ``duplicate`` decision and the rows
    and share columns kept per cohort; the summary (``CleanseResult.summary``)."""
    raw_rows = sum(part.rows for part in files)
    counts = sum((part.counts for part in files), np.zeros(len(codes) + 1, dtype=np.int64))
    flagged = {reason: sum(part.flagged[reason] for part in files) for reason in REASONS}
    flagged["duplicate"] = int(np.count_nonzero(superseded))
    shares = stream.share_columns
    labels = _labels(stream, codes)
    return {
        "raw_rows": raw_rows,
        "cleansed_rows": int(cleansed_rows.sum()),
        "rejected_rows": int(raw_rows - cleansed_rows.sum()),
        "rejections_by_reason": flagged,
        "cohorts": {
            code: {
                "label": labels[i],
                "cleansed": int(cleansed_rows[i]),
                "rejected": int(counts[i] - cleansed_rows[i]),
                "share_columns": [c for j, c in enumerate(shares) if answered[i, j]],
            }
            for i, code in enumerate(codes.to_pylist())
        },
        "share_columns": list(shares),
    }


@dataclass
class _Judged:
    rows: int
    start: int  # the batch's first record in its file
    rejected: pa.Table  # final rejections, but lines: ``source_row`` is the record index
    eligible: pa.Table  # the eligible rows' columns as pass 2 needs them (``_eligible``)
    shares: pa.Table  # their share cells (``_share_cells``)
    keys: dict[str, np.ndarray]
    counts: np.ndarray
    flagged: dict[str, int]


def _judge(
    batch: Batch,
    stream: ExportStream,
    codes: pa.Array,
    rules: CleanseRules,
    key: bytes,
    pool: ThreadPoolExecutor,
) -> _Judged:
    """Pass 1 for one batch: every rule but ``duplicate`` (``cleanse``'s functions)."""
    table = batch.table
    assert table is not None
    n = table.num_rows
    raw = {name: table.column(name) for name in stream.columns}
    source_file = pa.chunked_array([repeated_text(stream.files[batch.file].rel, n)])
    records = np.arange(batch.start, batch.start + n, dtype=np.int64)
    parsed = parse_columns(raw, source_file, records, codes, stream.share_columns, key, pool)
    flags = {reason: rule(parsed, rules) for reason, rule in RULES.items()}
    mask = reason_bits(flags)
    rejected_rows, eligible = np.flatnonzero(mask), np.flatnonzero(mask == 0)
    present = np.zeros((n, len(stream.share_columns)), dtype=bool)
    for j, column in enumerate(parsed.shares.columns):
        present[column.rows, j] = True
    cohort = parsed.cohort_index
    keys = {
        "first": parsed.respondents.first[eligible],
        "second": parsed.respondents.second[eligible],
        "cohort": cohort[eligible],
        "submitted": parsed.submitted.micros[eligible],
        "answered": np.packbits(present[eligible], axis=1),
    }
    return _Judged(
        rows=n,
        start=batch.start,
        rejected=_rejected(parsed, mask, rejected_rows),
        eligible=_eligible(parsed, eligible, keys),
        shares=_share_cells(parsed, eligible),
        keys=keys,
        counts=np.bincount(np.where(cohort < 0, len(codes), cohort), minlength=len(codes) + 1),
        flagged={reason: int(np.count_nonzero(flags[reason])) for reason in RULES},
    )


def _rejected(parsed: Parsed, mask: np.ndarray, rows: np.ndarray) -> pa.Table:
    """The rejected ``rows`` as pass 2 makes their rejections of (``_emit``): their raw
    JSON is made there, with the duplicates' (one ``raw_json`` a batch, not two), from the
    spilled raw values and the respondent hash's halves (``keyed``: the row has an id);
    ``source_file`` is the batch's file."""
    respondents = parsed.respondents
    return pa.table(
        {
            "cohort": parsed.disease.take(rows),
            "response_id": take_rows(parsed.response_id, rows),
            "reasons": reason_column(mask, rows),
            "source_row": pa.array(parsed.source_row[rows]),
            "first": pa.array(respondents.first[rows]),
            "second": pa.array(respondents.second[rows]),
            "keyed": pa.array(respondents.present[rows]),
            _POSITION: pa.array(rows),
        }
    )


def _eligible(parsed: Parsed, eligible: np.ndarray, keys: dict[str, np.ndarray]) -> pa.Table:
    """What pass 2 makes the ``eligible`` rows' output columns of: the cohort's and the
    source file's text are the same for every row of a cohort's piece (the cohort's code,
    the batch's file) and are not spilled; ``respondent_key`` is spilled as its two 64-bit
    halves, the category columns as dictionary indices into their batch's distinct values,
    ``source_row`` as the row's place in the batch, the share columns apart
    (``_share_cells``): about a third of the cleansed columns' bytes."""
    categories = parsed.categories
    columns: dict[str, pa.Array | pa.ChunkedArray] = {
        "response_id": take_rows(parsed.response_id, eligible),
        "first": pa.array(keys["first"]),
        "second": pa.array(keys["second"]),
        **{
            name: pa.DictionaryArray.from_arrays(
                pa.array(categories[name].index[eligible].astype(np.int32)),
                categories[name].values,
            )
            for name in _CATEGORIES
        },
        "started_at": timestamp_column(parsed.started, eligible),
        "submitted_at": timestamp_column(parsed.submitted, eligible),
        "n_patients": patients_column(parsed.patients, eligible),
        _POSITION: pa.array(eligible.astype(np.int32)),
    }
    return pa.table(columns)


def _share_cells(parsed: Parsed, eligible: np.ndarray) -> pa.Table:
    """The answered share cells of the ``eligible`` rows, column by column: the share
    column's number, the row's place among the eligible rows and the number (a row
    answers a few of the share columns: 16 float64 columns were half the spill)."""
    position = np.full(parsed.n, -1, dtype=np.int64)
    position[eligible] = np.arange(len(eligible))
    number = np.min_scalar_type(max(len(parsed.shares.columns) - 1, 0))  # a byte for 256
    which, rows, numbers = [np.zeros(0, number)], [np.zeros(0, np.int32)], [np.zeros(0)]
    for j, cells in enumerate(parsed.shares.columns):
        at = position[cells.rows]
        taken = at >= 0
        rows.append(at[taken].astype(np.int32))
        numbers.append(cells.numbers[taken])
        which.append(np.full(len(rows[-1]), j, dtype=number))
    return pa.table(
        {
            "column": pa.array(np.concatenate(which)),
            "row": pa.array(np.concatenate(rows)),
            "value": pa.array(np.concatenate(numbers)),
        }
    )


def _wait(jobs: list[Future[None]]) -> None:
    """Wait for ``jobs`` (raising their errors), and forget them."""
    for job in jobs:
        job.result()
    jobs.clear()


def _one_batch(table: pa.Table) -> pa.RecordBatch:
    """``table`` as one record batch (one spilled batch per batch read, even an empty one)."""
    columns = [c.chunk(0) if c.num_chunks == 1 else c.combine_chunks() for c in table.columns]
    return pa.RecordBatch.from_arrays(columns, schema=table.schema)


def _bytes(bits: int) -> int:
    return (bits + 7) // 8


def _superseded(keys: dict[str, np.ndarray]) -> np.ndarray:
    """``duplicate`` over the eligible rows of the whole export (in export order)."""
    # every eligible row has a respondent id and a known cohort (rules missing_required
    # and unknown_cohort): all of them take part, as in ``Groups.superseded``
    return latest_only(keys["first"], keys["second"], keys["cohort"], keys["submitted"])


def _answered(keys: dict[str, np.ndarray], staying: np.ndarray, cohorts: int, shares: int):
    """Per cohort and share column: whether a cleansed row of the cohort answered it."""
    out = np.zeros((cohorts, shares), dtype=bool)
    for i in range(cohorts):
        bits = keys["answered"][staying & (keys["cohort"] == i)]
        if len(bits):
            out[i] = np.unpackbits(np.bitwise_or.reduce(bits, axis=0))[:shares].astype(bool)
    return out


def _key_layout(cohorts: int, shares: int) -> dict[str, tuple[np.dtype, int]]:
    """Each kept key's type and values per row. The cohort number is the smallest integer
    that holds every cohort (a byte for up to 256): the keys of a big export are the peak
    of its cleansing's memory."""
    return {
        "first": (np.dtype(np.uint64), 1),
        "second": (np.dtype(np.uint64), 1),
        "cohort": (np.min_scalar_type(max(cohorts - 1, 0)), 1),
        "submitted": (np.dtype(np.int64), 1),
        "answered": (np.dtype(np.uint8), _bytes(shares)),
    }


class _KeyFiles:
    """A response file's keys, spilled a batch at a time: a file of raw values per key.

    Kept in memory instead, a big export's keys were a few hundred small arrays, and
    joining them held every key twice (at 10 M rows: 250 MiB more at the peak)."""

    def __init__(self, prefix: Path, layout: dict[str, tuple[np.dtype, int]]) -> None:
        self.prefix, self.layout = prefix, layout
        self.handles = {name: open(f"{prefix}.{name}", "wb") for name in layout}  # noqa: SIM115

    def append(self, keys: dict[str, np.ndarray]) -> None:
        for name, (dtype, _) in self.layout.items():
            np.ascontiguousarray(keys[name], dtype=dtype).tofile(self.handles[name])

    def close(self) -> None:
        for handle in self.handles.values():
            handle.close()


def _read_keys(
    files: list[_File], layout: dict[str, tuple[np.dtype, int]]
) -> dict[str, np.ndarray]:
    """Every file's spilled keys, in export order, each key read into one array."""
    total = sum(part.eligible_rows for part in files)
    keys = {}
    for name, (dtype, width) in layout.items():
        joined = np.empty((total, width) if width > 1 else total, dtype=dtype)
        flat = joined.reshape(-1).view(np.uint8)
        at = 0
        for part in files:
            path = f"{part.keys.prefix}.{name}"
            with open(path, "rb") as handle:
                size = part.eligible_rows * width * dtype.itemsize
                if handle.readinto(memoryview(flat[at : at + size])) != size:
                    raise OSError(f"the spilled keys {path} are incomplete")
                at += size
        keys[name] = joined
    return keys


_TEXT = pa.large_string()
REJECTION_SCHEMA = pa.schema(
    [(name, pa.int64() if name == "source_row" else _TEXT) for name in REJECTION_COLUMNS]
)


def _cohort_schema(shares: list[str], answered: np.ndarray) -> pa.Schema:
    """A cohort's cleansed columns: the share columns its cleansed rows answered."""
    used = [c for c, yes in zip(shares, answered.tolist(), strict=True) if yes]
    types = {"started_at": TIMESTAMP_TYPE, "submitted_at": TIMESTAMP_TYPE}
    types |= {"n_patients": pa.int64(), "source_row": pa.int64()}
    types |= dict.fromkeys(used, pa.float64())
    names = [*CLEANSED_COLUMNS, *used, *SOURCE_COLUMNS]
    return pa.schema([(name, types.get(name, _TEXT)) for name in names])


@dataclass
class _Spilled:
    """One batch of pass 1, read back from the spill."""

    start: int  # the batch's first record in its file
    eligible: pa.RecordBatch  # the eligible rows' columns (``_eligible``)
    shares: pa.RecordBatch  # their share cells (``_share_cells``)
    rejected: pa.Table  # its rejections (``source_row``: record indexes)
    raw: pa.RecordBatch  # every row's values as parsed


def _emit(
    stream: ExportStream,
    file: int,
    spilled: _Spilled,
    dropped: np.ndarray,
    cohort: np.ndarray,
    codes: pa.Array,
    schemas: list[pa.Schema],
) -> list[tuple[str, pa.Table]]:
    """Pass 2 for one spilled batch: the cleansed rows that stay, for their cohorts; the
    superseded ones and the batch's other rejections, in export order, for ``REJECTIONS``
    (the pieces to write, in the order to write them)."""
    pieces: list[tuple[str, pa.Table]] = []
    kept = _Kept(stream, file, spilled, codes)
    staying = ~dropped
    for i in np.unique(cohort[staying]).tolist():
        rows = np.flatnonzero(staying & (cohort == i))
        pieces.append((cohort_output(codes[i].as_py()), kept.cleansed(rows, i, schemas[i])))
    rejected = spilled.rejected
    lines = stream.line_numbers(file, rejected.column("source_row").to_numpy())
    rejected = rejected.set_column(
        rejected.schema.get_field_index("source_row"), "source_row", pa.array(lines)
    )
    if dropped.any():
        rows = np.flatnonzero(dropped)
        eligible = spilled.eligible
        duplicates = pa.table(
            {
                "cohort": codes.take(pa.array(cohort[rows])),
                "response_id": kept.response_id(rows),
                "reasons": repeated_text("duplicate", len(rows)),
                "source_row": pa.array(kept.lines[rows]),
                "first": eligible.column("first").take(pa.array(rows)),
                "second": eligible.column("second").take(pa.array(rows)),
                "keyed": pa.array(np.ones(len(rows), dtype=bool)),
                _POSITION: pa.array(kept.position[rows]),
            }
        )
        rejected = pa.concat_tables([rejected, duplicates.cast(rejected.schema)])
        rejected = rejected.take(pc.sort_indices(rejected.column(_POSITION)))
    if rejected.num_rows:
        pieces.append((REJECTIONS, _rejections(stream, file, spilled.raw, rejected)))
    return pieces


def _rejections(
    stream: ExportStream, file: int, raw: pa.RecordBatch, rejected: pa.Table
) -> pa.Table:
    """A batch's ``rejected`` rows (in export order) as written: with their raw JSON, from
    the batch's raw values as parsed."""
    at = rejected.column(_POSITION).to_numpy()  # in the batch as read
    keyed = rejected.column("keyed").to_numpy(zero_copy_only=False)
    key = hex_text(rejected.column("first").to_numpy(), rejected.column("second").to_numpy(), keyed)
    values = {name: raw.column(name) for name in stream.columns}
    columns = {
        "cohort": rejected.column("cohort"),
        "response_id": rejected.column("response_id"),
        "reasons": rejected.column("reasons"),
        "source_file": repeated_text(stream.files[file].rel, rejected.num_rows),
        "source_row": rejected.column("source_row"),
        "raw": raw_json(values, at, key),
    }
    return pa.table(columns).cast(REJECTION_SCHEMA)


class _Kept:
    """A spilled batch's eligible rows (``_eligible``, ``_share_cells``): their output
    columns, made for the rows taken (``cleansed``: one cohort's staying rows)."""

    def __init__(self, stream: ExportStream, file: int, spilled: _Spilled, codes: pa.Array):
        self.eligible, self.codes = spilled.eligible, codes
        self.position = self.eligible.column(_POSITION).to_numpy().astype(np.int64)
        self.lines = stream.line_numbers(file, spilled.start + self.position)
        self.source_file = stream.files[file].rel
        cells = spilled.shares
        self.cell_rows = cells.column("row").to_numpy()
        self.cell_values = cells.column("value").to_numpy()
        shares = len(stream.share_columns)
        which = cells.column("column").to_numpy()
        self.bounds = np.searchsorted(which, np.arange(shares + 1)).tolist()
        self.share_index = {name: j for j, name in enumerate(stream.share_columns)}

    def response_id(self, rows: np.ndarray) -> pa.Array:
        return self.eligible.column("response_id").take(pa.array(rows)).cast(_TEXT)

    def respondent_key(self, rows: np.ndarray) -> pa.Array:
        first = self.eligible.column("first").to_numpy()
        second = self.eligible.column("second").to_numpy()
        return hex_text(first[rows], second[rows])

    def category(self, name: str, rows: np.ndarray) -> pa.Array:
        column = self.eligible.column(name)
        return column.dictionary.take(pa.array(column.indices.to_numpy()[rows]))

    def share(self, name: str, rows: np.ndarray, at: np.ndarray) -> pa.Array:
        """A share column of ``rows`` (NaN where not answered); ``at``: each eligible row's
        place among ``rows`` (-1: not taken)."""
        j = self.share_index[name]
        lo, hi = self.bounds[j], self.bounds[j + 1]
        column = np.full(len(rows), np.nan)  # NaN stays NaN: pandas' missing float
        place = at[self.cell_rows[lo:hi]]
        taken = place >= 0
        column[place[taken]] = self.cell_values[lo:hi][taken]
        return pa.array(column)

    def cleansed(self, rows: np.ndarray, cohort: int, schema: pa.Schema) -> pa.Table:
        """``rows`` (of cohort number ``cohort``) in the cohort's ``schema``."""
        at = np.full(self.eligible.num_rows, -1, dtype=np.int64)
        at[rows] = np.arange(len(rows))
        columns = []
        for name in schema.names:
            if name == "cohort":
                column = repeated_text(self.codes[cohort].as_py(), len(rows))
            elif name == "response_id":
                column = self.response_id(rows)
            elif name == "respondent_key":
                column = self.respondent_key(rows)
            elif name in _CATEGORIES:
                column = self.category(name, rows)
            elif name == "source_file":
                column = repeated_text(self.source_file, len(rows))
            elif name == "source_row":
                column = pa.array(self.lines[rows])
            elif name in self.share_index:
                column = self.share(name, rows, at)
            else:  # the timestamps, n_patients
                column = self.eligible.column(name).take(pa.array(rows))
            columns.append(column)
        return pa.Table.from_arrays(columns, schema=schema)


_CATEGORIES = ("specialty", "region", "facility_type", "attention_check")
# read dictionary-encoded (``coded`` takes their distinct values as read; the raw spill
# holds an index a row)
_DICTIONARY_COLUMNS = ("disease", *_CATEGORIES)


def _labels(stream: ExportStream, codes: pa.Array) -> list[str]:
    if "label" in stream.cohorts:
        return stream.cohorts["label"].fillna("").astype(str).tolist()
    return codes.to_pylist()
