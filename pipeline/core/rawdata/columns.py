"""Arrow string columns at the buffer level: zero-copy views, chunks, takes and splices.

Real exports are mostly clean, so the normalisation (``normalize``) and the decoding
(``encoding``) work on arrow's buffers with numpy and copy a column only when some value
in it actually changes; these are their tools. A column may come in chunks (arrow's parse
blocks): ``text_chunks``/``take_rows`` work on them without joining them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc


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


def take_table_rows(table: pa.Table, rows: np.ndarray) -> pa.Table:
    """``table`` at sorted ``rows``, one chunk per column: taken batch by batch (arrow cuts
    the batches where any column's chunks end), never joining a whole column."""
    parts, start = [], 0
    for batch in table.to_batches():
        end = start + batch.num_rows
        low, high = np.searchsorted(rows, [start, end]).tolist()
        if high > low:
            parts.append(batch.take(pa.array(rows[low:high] - start)))
        start = end
    if not parts:
        return table.schema.empty_table()
    return pa.Table.from_batches(parts, table.schema).combine_chunks()


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
