"""Encodings: UTF-8 (with or without BOM) or CP932, detected per file.

CP932 files are parsed as raw bytes (their ASCII bytes are ASCII, and no second byte is
``,``, ``"``, CR or LF), and only the distinct non-ASCII values of a column are decoded.
"""

from __future__ import annotations

import codecs

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.core.rawdata.columns import rows_holding, splice, string_buffers
from pipeline.core.rawdata.schema import BOM, UTF8
from pipeline.errors import InputError


def decode_bytes(data: bytes | memoryview, file: str) -> str:
    """The text of a CSV file's bytes: UTF-8 (a BOM is dropped) if valid, else CP932.

    Raises ``InputError`` naming ``file``, the line and the byte offset of the first byte
    that is neither.
    """
    data = bytes(data)  # a memory-mapped file's view too
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as utf8_error:
        try:
            return data.decode("cp932")
        except UnicodeDecodeError as cp932_error:
            raise _undecodable(data, file, utf8_error, cp932_error) from None


def _undecodable(
    data: bytes, file: str, utf8_error: UnicodeDecodeError, cp932_error: UnicodeDecodeError
) -> InputError:
    # The encoding that got further is the likelier intent; report where it broke.
    utf8_at = utf8_error.start + (len(BOM) if data.startswith(BOM) else 0)
    offset = max(utf8_at, cp932_error.start)
    line = data.count(b"\n", 0, offset) + 1
    return InputError(
        f"byte 0x{data[offset]:02x} at byte offset {offset} is neither UTF-8 nor CP932 "
        "(Shift_JIS) text; the export must be UTF-8 or CP932",
        file=file,
        row=line,
    )


def looks_utf8(data: bytes | memoryview) -> bool:
    """Whether the start of ``data`` is UTF-8 (arrow validates the rest while parsing)."""
    try:
        codecs.getincrementaldecoder("utf-8")().decode(bytes(data[: 1 << 16]), final=False)
    except UnicodeDecodeError:
        return False
    return True


class NotUtf8(Exception):
    """Arrow found invalid UTF-8 past the checked start of a file."""


def decode_column(
    values: pa.ChunkedArray, data: bytes | memoryview, file: str, encoding: str
) -> pa.ChunkedArray:
    """A ``large_binary`` column of ``encoding`` text as ``large_string``, chunk by chunk
    (``_decode_chunk``): the chunks are not joined."""
    chunks = [_decode_chunk(chunk, data, file, encoding) for chunk in values.chunks]
    return pa.chunked_array(chunks, pa.large_string())


def _decode_chunk(values: pa.Array, data: bytes | memoryview, file: str, encoding: str) -> pa.Array:
    """``decode_chunk``; a value that does not decode makes the whole file's error
    (``decode_bytes`` of ``data``), naming its line and byte offset."""
    try:
        return decode_chunk(values, encoding)
    except UnicodeDecodeError:
        decode_bytes(data, file)  # raises, naming the line and byte offset
        raise


def decode_chunk(values: pa.Array, encoding: str) -> pa.Array:
    """A ``large_binary`` array of ``encoding`` text as ``large_string``.

    ASCII values are the same bytes in UTF-8 and stay where they are; the distinct other
    values are decoded once each. Raises ``UnicodeDecodeError`` for a value that does not
    decode.
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
    decoded = [value.decode(encoding) for value in encoded.dictionary.to_pylist()]
    fixed = pa.array(decoded, pa.large_string()).take(encoded.indices)
    return fixed if whole else splice(text, odd, fixed)


def decoded_text(data: bytes | memoryview, file: str, encoding: str) -> str:
    """The whole text of ``data`` (rare paths: blank lines, line breaks in values, errors)."""
    if encoding == UTF8:
        return bytes(data).decode("utf-8", errors="replace")
    return decode_bytes(data, file)
