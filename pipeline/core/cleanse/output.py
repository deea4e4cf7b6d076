"""The cleansed table, the rejections (with the raw JSON of each row) and the summary."""

from __future__ import annotations

import json
from concurrent.futures import Executor, Future
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.core.cleanse.contract import REASONS, TIMESTAMP_TYPE
from pipeline.core.cleanse.respondents import hex_keys
from pipeline.core.cleanse.values import Numbers, Parsed, Shares, Times
from pipeline.core.rawdata import (
    RawExport,
    string_buffers,
    take_rows,
    take_table_rows,
)

_REASON_TEXT = np.array(
    [";".join(r for i, r in enumerate(REASONS) if mask >> i & 1) for mask in range(256)],
    dtype=object,
)


def timestamp_column(times: Times, rows: np.ndarray) -> pa.Array:
    return pa.array(times.micros[rows], type=pa.int64(), mask=~times.ok[rows]).cast(TIMESTAMP_TYPE)


def number_column(values: np.ndarray, rows: np.ndarray) -> pa.Array:
    return pa.array(values[rows])


def reason_column(mask: np.ndarray, rows: np.ndarray) -> pa.Array:
    """``reasons`` of ``rows`` (``mask``: a bit per reason): ``;``-joined, in ``REASONS`` order."""
    return pa.array(_REASON_TEXT[mask[rows]], pa.large_string())


def rejections(parsed: Parsed, mask: np.ndarray, rows: np.ndarray) -> pa.Table:
    """The rejected ``rows`` with their reasons (``mask``: a bit per reason) and raw JSON."""
    return pa.table(
        {
            "cohort": parsed.disease.take(rows),
            "response_id": take_rows(parsed.response_id, rows),
            "reasons": reason_column(mask, rows),
            "source_file": parsed.source_file.take(rows),
            "source_row": pa.array(parsed.source_row[rows]),
            "raw": raw_json(parsed.raw, rows, hex_keys(parsed.respondents, rows, nulls=True)),
        }
    )


def cleansed(parsed: Parsed, kept: np.ndarray, pool: Executor) -> pa.Table:
    """The ``kept`` rows in ``CLEANSED_COLUMNS`` (then the shares and the source columns),
    each column made on ``pool``."""
    position = np.full(parsed.n, -1, dtype=np.int64)
    position[kept] = np.arange(len(kept))

    def share_column(cells: Numbers) -> pa.Array:
        column = np.full(len(kept), np.nan)  # NaN stays NaN: pandas' missing float
        at = position[cells.rows]
        column[at[at >= 0]] = cells.numbers[at >= 0]
        return pa.array(column)

    categories = parsed.categories
    jobs: dict[str, Future[pa.Array]] = {
        "cohort": pool.submit(parsed.disease.take, kept),
        "response_id": pool.submit(take_rows, parsed.response_id, kept),
        "respondent_key": pool.submit(hex_keys, parsed.respondents, kept),
        **{
            name: pool.submit(categories[name].take, kept)
            for name in ("specialty", "region", "facility_type")
        },
        "started_at": pool.submit(timestamp_column, parsed.started, kept),
        "submitted_at": pool.submit(timestamp_column, parsed.submitted, kept),
        "n_patients": pool.submit(patients_column, parsed.patients, kept),
        "attention_check": pool.submit(categories["attention_check"].take, kept),
        **{
            name: pool.submit(share_column, cells)
            for name, cells in zip(parsed.share_columns, parsed.shares.columns, strict=True)
        },
        "source_file": pool.submit(parsed.source_file.take, kept),
        "source_row": pool.submit(number_column, parsed.source_row, kept),
    }
    return pa.table({name: job.result() for name, job in jobs.items()})


def patients_column(patients: Numbers, rows: np.ndarray) -> pa.Array:
    """``n_patients`` of ``rows`` as int64 (rows without a whole number: 0; the rules
    reject them)."""
    whole = np.floor(patients.numbers) == patients.numbers
    values = np.zeros(patients.n, dtype=np.int64)
    clipped = np.clip(patients.numbers[whole], -(2**62), 2**62)
    values[patients.rows[whole]] = clipped.astype(np.int64)
    return pa.array(values[rows])


def _lit(text: str) -> pa.Scalar:
    return pa.scalar(text, pa.large_string())


_JSON_SPECIAL = np.zeros(256, dtype=bool)

_JSON_SPECIAL[[*range(0x20), ord('"'), ord("\\")]] = True


def _json_escaped(values: pa.Array) -> pa.Array:
    """Values escaped for the inside of a JSON string (nulls kept), UTF-8 kept as is."""
    _, data = string_buffers(values)
    if not _JSON_SPECIAL[data].any():  # the usual case, checked on the bytes at once
        return values
    escaped = values
    for char, escape in (("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t")):
        escaped = pc.replace_substring(escaped, char, escape)
    control = pc.fill_null(pc.match_substring_regex(values, r"[\x00-\x08\x0b\x0c\x0e-\x1f]"), False)
    if pc.any(control).as_py():  # rare: let json write the \u00XX escapes
        odd = [json.dumps(v, ensure_ascii=False)[1:-1] for v in values.filter(control).to_pylist()]
        escaped = pc.replace_with_mask(escaped, control, pa.array(odd, escaped.type))
    return escaped


def raw_json(raw: dict[str, pa.Array], rows: np.ndarray, respondent_key: pa.Array) -> pa.Array:
    """The values of ``rows`` as delivered, as JSON objects of their own file's columns.

    ``respondent_key`` holds the keyed hash of each of ``rows`` (null for no id).

    A null cell means the row's file lacks that column (delivered empty cells are ``""``),
    so it is left out. ``respondent_id`` becomes ``respondent_key`` with the keyed hash.
    The first column (``response_id``, required in every file) opens each object.
    """
    if len(rows) == 0:
        return pa.array([], pa.large_string())
    # constant text between the values is joined into one literal (fewer, longer pieces)
    parts: list[pa.Array | pa.Scalar] = []
    text = "{"
    taken = take_table_rows(pa.table(raw), rows)  # the rejected rows: few
    for name, cells in zip(taken.column_names, taken.columns, strict=True):
        cells = cells.chunk(0)
        if cells.type != pa.large_string():  # (pass 2's spilled raw values: 32-bit offsets)
            cells = cells.cast(pa.large_string())
        if name == "respondent_id":
            name, cells = "respondent_key", pc.fill_null(respondent_key, _lit(""))
        key = json.dumps(name, ensure_ascii=False)
        cells = _json_escaped(cells)
        if not parts:
            parts += [_lit(text + key + ':"'), pc.fill_null(cells, _lit(""))]
            text = '"'
        elif cells.null_count:  # a column the row's file may lack: the pair is left out
            joined = pc.binary_join_element_wise(_lit("," + key + ':"'), cells, _lit('"'), _lit(""))
            parts += [_lit(text), pc.fill_null(joined, _lit(""))]
            text = ""
        else:
            parts += [_lit(text + "," + key + ':"'), cells]
            text = '"'
    parts.append(_lit(text + "}"))
    return pc.binary_join_element_wise(*parts, _lit(""))


def summary(
    export: RawExport,
    mask: np.ndarray,
    flags: dict[str, np.ndarray],
    cohort_index: np.ndarray,
    shares: Shares,
    share_columns: list[str],
) -> dict[str, Any]:
    codes = export.cohorts["code"].astype(str).tolist()
    if "label" in export.cohorts:
        labels = export.cohorts["label"].fillna("").astype(str).tolist()
    else:
        labels = codes
    index = np.where(cohort_index < 0, len(codes), cohort_index)
    kept = mask == 0
    kept_index = np.where(kept, index, len(codes))  # the last bucket: rejected or no cohort
    counts_all = np.bincount(index, minlength=len(codes) + 1)
    counts_kept = np.bincount(kept_index, minlength=len(codes) + 1)
    answered = np.zeros((len(codes) + 1, len(share_columns)), dtype=bool)
    for j, rows in enumerate(column.rows for column in shares.columns):
        answered[:, j] = np.bincount(kept_index[rows], minlength=len(codes) + 1) > 0
    cohorts = {
        code: {
            "label": labels[i],
            "cleansed": int(counts_kept[i]),
            "rejected": int(counts_all[i] - counts_kept[i]),
            "share_columns": [c for j, c in enumerate(share_columns) if answered[i, j]],
        }
        for i, code in enumerate(codes)
    }
    return {
        "raw_rows": len(mask),
        "cleansed_rows": int(np.count_nonzero(kept)),
        "rejected_rows": int(len(mask) - np.count_nonzero(kept)),
        "rejections_by_reason": {r: int(np.count_nonzero(flags[r])) for r in REASONS},
        "cohorts": cohorts,
        "share_columns": list(share_columns),
    }
