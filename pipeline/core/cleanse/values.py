"""Column shapes the rules share: category columns (``Coded``), parsed numbers and
timestamps, and runs of one value (``Runs``)."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.core.rawdata import (
    as_chunked,
    normalize_text,
    parse_number_cells,
    take_rows,
    text_chunks,
    valid_mask,
)

if TYPE_CHECKING:
    from pipeline.core.cleanse.respondents import Groups, Respondents


def normalized(values: pa.ChunkedArray) -> pa.ChunkedArray:
    """``normalize_text`` chunk by chunk."""
    return pa.chunked_array([normalize_text(c) for c in text_chunks(values)], pa.large_string())


@dataclass
class Coded:
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


def coded(values: pa.Array | pa.ChunkedArray) -> Coded:
    """``values`` (categories such as specialty or disease) as a ``Coded`` column."""
    dictionary, indices = encode_dictionary(values)
    if len(dictionary) > _FEW:  # not categories after all: the general way
        dictionary, indices = encode_dictionary(normalized(values))
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
    return Coded(distinct, index)


def encode_dictionary(values: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, pa.ChunkedArray]:
    """The distinct values of a text column and each row's index into them (null: null),
    the chunks encoded against one dictionary. A dictionary-encoded column (as
    ``ExportStream.batches`` reads the category columns) is taken as it is."""
    if pa.types.is_dictionary(values.type):
        encoded = values if isinstance(values, pa.ChunkedArray) else pa.chunked_array([values])
    else:
        encoded = as_chunked(values).dictionary_encode()
    # arrow encodes the chunks against one memo: they share the final dictionary (unifying
    # anyway would hash every chunk's copy again)
    if len({id(c.dictionary.buffers()[-1]) for c in encoded.chunks}) > 1 and not all(
        c.dictionary.equals(encoded.chunk(0).dictionary) for c in encoded.chunks
    ):
        encoded = encoded.unify_dictionaries()
    if encoded.num_chunks == 0:
        return pa.array([], pa.large_string()), pa.chunked_array([], pa.int32())
    distinct = encoded.chunk(0).dictionary
    if distinct.type != pa.large_string():
        distinct = distinct.cast(pa.large_string())
    indices = [c.indices.cast(pa.int32()) for c in encoded.chunks]
    return distinct, pa.chunked_array(indices, pa.int32())


def diseases(values: pa.Array, codes: pa.Array) -> tuple[Coded, np.ndarray]:
    """Normalised, lower-cased disease codes and their cohort's index (-1: none/unknown).

    Lower-casing and matching are done on the distinct values only.
    """
    categories = coded(values)
    lowered = pc.utf8_lower(categories.values)
    cohort = index_array(pc.index_in(lowered, value_set=codes))
    return Coded(lowered, categories.index), cohort[categories.index]


def index_array(values: pa.Array) -> np.ndarray:
    """Integer array as int64 numpy, null → -1."""
    return pc.fill_null(values, -1).to_numpy(zero_copy_only=False).astype(np.int64)


class Runs:
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


@dataclass
class Numbers:
    """A parsed number column (``parse_number_cells``): the rows holding a number and the
    numbers, and the rows present but not a number."""

    rows: np.ndarray
    numbers: np.ndarray
    bad_rows: np.ndarray
    n: int  # rows in the column

    @classmethod
    def parse(cls, values: pa.ChunkedArray) -> Numbers:
        return cls(*parse_number_cells(values), len(values))

    @classmethod
    def parse_many(cls, columns: list[pa.ChunkedArray]) -> list[Numbers]:
        """``parse`` of several columns of one length (the shares: mostly empty) at once:
        their chunks parsed as one column, so the per-call work is paid once, not per
        column; then the cells are split by column again."""
        if len(columns) <= 1:
            return [cls.parse(column) for column in columns]
        n = len(columns[0])
        joined = pa.chunked_array([c for column in columns for c in text_chunks(column)])
        rows, numbers, bad_rows = parse_number_cells(joined)
        ends = np.arange(1, len(columns) + 1) * n
        if np.all(rows[1:] > rows[:-1]) and np.all(bad_rows[1:] > bad_rows[:-1]):
            # in order (as the filled cells are): each column's cells are a slice
            cuts, bad_cuts = np.searchsorted(rows, ends), np.searchsorted(bad_rows, ends)
            starts, bad_starts = np.concatenate([[0], cuts]), np.concatenate([[0], bad_cuts])
            return [
                cls(
                    rows[starts[j] : cuts[j]] - j * n,
                    numbers[starts[j] : cuts[j]],
                    bad_rows[bad_starts[j] : bad_cuts[j]] - j * n,
                    n,
                )
                for j in range(len(columns))
            ]
        which, bad_which = rows // max(n, 1), bad_rows // max(n, 1)
        out = []
        for j in range(len(columns)):
            mine, bad = which == j, bad_rows[bad_which == j]
            out.append(cls(rows[mine] - j * n, numbers[mine], bad - j * n, n))
        return out

    @property
    def present(self) -> np.ndarray:
        out = np.zeros(self.n, dtype=bool)
        out[self.rows] = True
        out[self.bad_rows] = True
        return out


@dataclass
class Times:
    """A parsed timestamp column (``parse_timestamps``)."""

    micros: np.ndarray  # int64 microseconds since the epoch, UTC; meaningless where not ok
    ok: np.ndarray  # parsed to a real time
    present: np.ndarray  # not empty


@dataclass
class Shares:
    """The parsed share columns together."""

    columns: list[Numbers]
    total: np.ndarray  # per row, a missing share counting 0
    bad: np.ndarray  # rows with an unparseable share

    @classmethod
    def combine(cls, columns: list[Numbers], n: int) -> Shares:
        total, bad = np.zeros(n), np.zeros(n, dtype=bool)
        for column in columns:
            total[column.rows] += column.numbers
            bad[column.bad_rows] = True
        return cls(columns, total, bad)


@dataclass
class Parsed:
    """The response columns as the rules and the outputs read them, each parsed once."""

    raw: dict[str, pa.ChunkedArray]  # every column as delivered but the source columns
    response_id: pa.ChunkedArray  # normalised (null: empty)
    respondents: Respondents
    groups: Groups
    disease: Coded  # normalised, lower-cased
    cohort_index: np.ndarray  # per row, into the cohorts (-1: none or unknown)
    categories: dict[str, Coded]  # attention_check, specialty, region, facility_type
    started: Times
    submitted: Times
    patients: Numbers
    share_columns: list[str]
    shares: Shares
    source_file: Runs
    source_row: np.ndarray

    @property
    def n(self) -> int:
        return len(self.cohort_index)

    @property
    def present(self) -> dict[str, np.ndarray]:
        """Per required column, the rows that have a value (after normalisation)."""
        return {
            "response_id": valid_mask(self.response_id),
            "respondent_id": self.respondents.present,
            "disease": self.disease.present,
            "n_patients": self.patients.present,
            "submitted_at": self.submitted.present,
        }
