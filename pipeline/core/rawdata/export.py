"""Reading the whole export: ``read_raw_export``, ``read_cohorts`` and ``RawExport``."""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.core.rawdata.columns import repeated_text
from pipeline.core.rawdata.discovery import csv_files, file_bytes, sha256
from pipeline.core.rawdata.normalize import normalize_text, parse_numbers
from pipeline.core.rawdata.parsing import Parsed, line_breaks, parse_csv
from pipeline.core.rawdata.schema import (
    COHORT_CODE,
    COHORT_COLUMNS,
    COHORTS_FILE,
    FRAME_COLUMNS,
    FRAME_FILE,
    RESPONSE_COLUMNS,
    SEGMENT_COLUMNS,
    SHARE_PREFIX,
    SOURCE_COLUMNS,
)
from pipeline.errors import InputError

_HELPERS = 2


@dataclass
class RawExport:
    """A raw export as read from disk.

    - ``responses``: every record of every response file, in file order (files sorted by
      path), columns ``RESPONSE_COLUMNS``, then the union of the share columns (in order of
      first appearance), then any other columns, then ``source_file`` (path relative to
      the raw directory, ``/``-separated) and ``source_row`` (int64, line number). Values
      are the decoded strings as delivered; ``""`` is an empty field, null a column the
      row's file does not have. The text columns are pandas ``str`` columns backed by
      arrow's parse chunks as they are (several chunks per file, never joined: zero-copy).
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
    return _cohorts(parse_csv(file_bytes(path), COHORTS_FILE))


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
    files = csv_files(raw_dir)
    special_files(raw_dir, {rel for rel, _ in files})

    # Arrow parses each file on all cores. Around it, two helper threads map the next
    # files, hash them (hashlib releases the GIL), count their line breaks and decode CP932
    # columns, so that little waits on the main thread.
    with ThreadPoolExecutor(max_workers=_HELPERS) as pool:
        hashing: dict[str, Future[str]] = {}
        tables: dict[str, Parsed] = {}
        content = pool.submit(file_bytes, files[0][1])
        for i, (rel, _) in enumerate(files):
            data = content.result()
            if i + 1 < len(files):  # the next file is read while this one is parsed
                content = pool.submit(file_bytes, files[i + 1][1])
            breaks = pool.submit(line_breaks, data)  # needed once arrow has parsed
            hashing[rel] = pool.submit(sha256, data)
            try:
                tables[rel] = parse_csv(data, rel, pool, breaks)
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
    # arrow's allocator keeps the parse's scratch memory for reuse; numpy (cleansing) cannot
    # reuse it, so it goes back to the system now
    pa.default_memory_pool().release_unused()
    return RawExport(responses, cohorts, frame, share_columns, digests)


def special_files(raw_dir: Path, names: set[str]) -> None:
    """Refuse an export without ``cohorts.csv`` and ``frame.csv`` at its top (or with a
    copy below it)."""
    for special in (COHORTS_FILE, FRAME_FILE):
        nested = sorted(rel for rel in names if rel.endswith("/" + special))
        if nested:
            raise InputError(
                f"{special} must sit at the top of the raw directory {raw_dir}, not below it",
                file=nested[0],
            )
        if special not in names:
            raise InputError(f"no {special} in the raw directory {raw_dir}", file=special)


def _require(parsed: Parsed, columns: Iterable[str]) -> None:
    missing = [name for name in columns if name not in parsed.table.column_names]
    if missing:
        raise InputError(
            f"missing required column(s) {', '.join(missing)}; the header has "
            f"{', '.join(parsed.table.column_names)}",
            file=parsed.file,
            row=1,
        )


def _cohorts(parsed: Parsed) -> pd.DataFrame:
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


def _frame(parsed: Parsed) -> pd.DataFrame:
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


def _responses(parsed: list[Parsed]) -> tuple[pd.DataFrame, list[str]]:
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
