"""Reading the raw survey export as delivered (docs/contracts/raw-export.md).

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
value spans lines; CP932 files are parsed as raw bytes and only the distinct non-ASCII
values of a column are decoded; two helper threads read and hash the files, count their
line breaks and decode columns while arrow parses. The parsed chunks are kept as they are
(a column of the responses is a chunked array), never joined into one buffer.

The modules: ``schema`` (file names, columns), ``discovery`` (finding and hashing the
files), ``encoding`` (UTF-8/CP932), ``parsing`` (one file with arrow), ``columns`` (arrow
buffers), ``normalize`` (text and numbers), ``export`` (the whole export at once) and
``stream`` (the response files in record batches, for cleansing in bounded memory).
"""

from pipeline.core.rawdata.columns import (
    as_chunked,
    as_text,
    empty_to_null,
    repeated_text,
    rows_holding,
    splice,
    string_buffers,
    take_rows,
    take_table_rows,
    text_chunks,
    valid_mask,
)
from pipeline.core.rawdata.discovery import checksums
from pipeline.core.rawdata.encoding import decode_bytes
from pipeline.core.rawdata.export import RawExport, read_cohorts, read_raw_export
from pipeline.core.rawdata.normalize import normalize_text, parse_number_cells, parse_numbers
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
from pipeline.core.rawdata.stream import ExportStream

__all__ = [
    "COHORTS_FILE",
    "COHORT_CODE",
    "COHORT_COLUMNS",
    "FRAME_COLUMNS",
    "FRAME_FILE",
    "RESPONSE_COLUMNS",
    "SEGMENT_COLUMNS",
    "SHARE_PREFIX",
    "SOURCE_COLUMNS",
    "ExportStream",
    "RawExport",
    "as_chunked",
    "as_text",
    "checksums",
    "decode_bytes",
    "empty_to_null",
    "normalize_text",
    "parse_number_cells",
    "parse_numbers",
    "read_cohorts",
    "read_raw_export",
    "repeated_text",
    "rows_holding",
    "splice",
    "string_buffers",
    "take_rows",
    "take_table_rows",
    "text_chunks",
    "valid_mask",
]
