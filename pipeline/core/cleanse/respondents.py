"""Respondent ids: the keyed ``respondent_key`` hash and the grouping for ``duplicate``."""

from __future__ import annotations

import binascii
import hmac
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from pipeline.core.cleanse.contract import KEY_DERIVATION, KEY_HEX_DIGITS
from pipeline.core.cleanse.values import normalized
from pipeline.core.rawdata import take_rows, valid_mask


@dataclass
class Respondents:
    """The normalised respondent ids' keyed hash, per row (see ``respondent_key``)."""

    present: np.ndarray  # bool: an id is there
    first: np.ndarray  # uint64: the first half of the keyed hash (0 where absent)
    second: np.ndarray  # uint64: the second half


def respondent_hashes(values: pa.ChunkedArray, key: bytes) -> Respondents:
    """Normalise the ids and hash them under ``key`` (see ``respondent_key``). Ids are
    nearly all distinct, so hashing each row costs no more than finding the distinct ids."""
    text = normalized(values)
    present = valid_mask(text)
    if present.all():
        return Respondents(present, *keyed_hashes(text, key))
    rows = np.flatnonzero(present)
    first, second = np.zeros(len(text), np.uint64), np.zeros(len(text), np.uint64)
    first[rows], second[rows] = keyed_hashes(take_rows(text, rows), key)
    return Respondents(present, first, second)


def keyed_hashes(ids: pa.Array | pa.ChunkedArray, key: bytes) -> tuple[np.ndarray, np.ndarray]:
    """The two uint64 halves of the keyed hash of each id (no nulls).

    See the module docstring: two SipHash-2-4 keys derived from ``key`` with HMAC-SHA256,
    applied by pandas in C to the UTF-8 bytes (bytes pass through ``hash_array`` as they
    are; latin-1 only maps the 16 key bytes to the ``hash_key`` string one to one).
    """
    derived = hmac.digest(key, KEY_DERIVATION, "sha256")
    values = ids.cast(pa.large_binary()).to_numpy(zero_copy_only=False)
    if len(values) == 0:
        return np.zeros(0, np.uint64), np.zeros(0, np.uint64)
    first, second = (
        pd.util.hash_array(
            values, encoding="latin-1", hash_key=half.decode("latin-1"), categorize=False
        )
        for half in (derived[:16], derived[16:])
    )
    return first, second


_SPREAD = np.uint64(0x9E3779B97F4A7C15)  # odd: spreads cohort numbers over 64 bits


class Groups:
    """The rows with a respondent and a known cohort, and a 64-bit key per row (the first
    half of the keyed hash plus a multiple of the cohort).

    Rows whose key repeats are found by hashing the keys (no sort of every row); only they
    are then grouped exactly, on the whole 128-bit hash and the cohort.
    """

    def __init__(self, respondents: Respondents, cohort: np.ndarray) -> None:
        self.respondents, self.cohort = respondents, cohort
        self.rows = np.flatnonzero(respondents.present & (cohort >= 0))
        self.key = respondents.first + cohort.astype(np.uint64) * _SPREAD

    def superseded(self, candidates: np.ndarray, submitted: np.ndarray) -> np.ndarray:
        """Candidate rows that a later submission (same respondent and cohort) supersedes:
        per group the latest ``submitted`` stays, a tie going to the later row."""
        out = np.zeros(len(candidates), dtype=bool)
        rows = self.rows[candidates[self.rows]]
        repeated = pd.Series(self.key[rows]).duplicated(keep=False).to_numpy()
        if not repeated.any():
            return out
        idx = rows[repeated]
        first, second = self.respondents.first[idx], self.respondents.second[idx]
        cohort = self.cohort[idx]
        order = np.lexsort((idx, submitted[idx], cohort, second, first))
        first, second, cohort = first[order], second[order], cohort[order]
        group_continues = (
            (first[1:] == first[:-1]) & (second[1:] == second[:-1]) & (cohort[1:] == cohort[:-1])
        )
        out[idx[order[:-1][group_continues]]] = True
        return out


def hex_keys(respondents: Respondents, rows: np.ndarray, nulls: bool = False) -> pa.Array:
    """``respondent_key`` text of ``rows`` (with ``nulls``, null where there is no id)."""
    words = np.empty((len(rows), 2), dtype=">u8")
    words[:, 0], words[:, 1] = respondents.first[rows], respondents.second[rows]
    digits = np.frombuffer(binascii.hexlify(words.data), dtype=np.uint8)
    offsets = np.arange(0, len(rows) * KEY_HEX_DIGITS + 1, KEY_HEX_DIGITS, dtype=np.int64)
    valid = respondents.present[rows]
    missing = int(len(rows) - np.count_nonzero(valid)) if nulls else 0
    validity = pa.py_buffer(np.packbits(valid, bitorder="little")) if missing else None
    return pa.Array.from_buffers(
        pa.large_string(),
        len(rows),
        [validity, pa.py_buffer(offsets), pa.py_buffer(digits)],
        missing,
    )
