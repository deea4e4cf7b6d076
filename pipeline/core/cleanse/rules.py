"""The cleansing rules, one small pure function each (docs/contracts/cleansing.md).

Each takes parsed columns (``values``) and the thresholds, and returns a bool per row:
whether the reason applies. They read no configuration and mutate nothing; ``cleanse``
composes them, and a row is rejected with every reason whose rule marks it.
``duplicate`` comes last: it looks only at the rows that no other rule rejects.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Mapping

import numpy as np

from pipeline.core.cleanse.contract import REASONS, REQUIRED_COLUMNS, CleanseRules
from pipeline.core.cleanse.respondents import Groups
from pipeline.core.cleanse.values import Coded, Numbers, Parsed, Shares, Times


def missing_required(present: Mapping[str, np.ndarray]) -> np.ndarray:
    """A required column is empty (``present``: per column, the rows that have a value)."""
    out = np.zeros(len(next(iter(present.values()))), dtype=bool)
    for name in REQUIRED_COLUMNS:
        out |= ~present[name]
    return out


def unparseable(patients: Numbers, started: Times, submitted: Times, shares: Shares) -> np.ndarray:
    """A value is present but not what its column holds: ``n_patients`` not a whole
    number, a timestamp that does not parse (or names no real time), a share that is not
    a number."""
    out = np.zeros(patients.n, dtype=bool)
    out[patients.bad_rows] = True
    out[patients.rows[np.floor(patients.numbers) != patients.numbers]] = True
    out |= (started.present & ~started.ok) | (submitted.present & ~submitted.ok)
    return out | shares.bad


def unknown_cohort(disease: Coded, cohort_index: np.ndarray) -> np.ndarray:
    """A disease code is given but names no cohort of the export."""
    return disease.present & (cohort_index < 0)


def out_of_range(patients: Numbers, shares: Shares, rules: CleanseRules) -> np.ndarray:
    """``n_patients`` or a share lies outside its bounds."""
    out = np.zeros(patients.n, dtype=bool)
    numbers = patients.numbers
    out[patients.rows[(numbers < rules.n_patients_min) | (numbers > rules.n_patients_max)]] = True
    for column in shares.columns:
        numbers = column.numbers
        out[column.rows[(numbers < rules.share_min) | (numbers > rules.share_max)]] = True
    return out


def shares_not_100(shares: Shares, rules: CleanseRules) -> np.ndarray:
    """The shares (a missing one counting 0) do not sum to 100 within the tolerance; not
    applied when a share is unparseable (the sum is unknown)."""
    return ~shares.bad & (np.abs(shares.total - 100.0) > rules.share_sum_tolerance + 1e-9)


def speeder(started: Times, submitted: Times, rules: CleanseRules) -> np.ndarray:
    """Both timestamps parse and lie less than the minimum duration apart."""
    duration = submitted.micros - started.micros
    return started.ok & submitted.ok & (duration < rules.min_duration_seconds * 1e6)


def attention_failed(attention_check: Coded, rules: CleanseRules) -> np.ndarray:
    """The attention check is not the expected answer (compared NFKC-normalised and
    stripped); a missing answer fails too."""
    expected = unicodedata.normalize("NFKC", str(rules.attention_expected)).strip()
    return ~attention_check.equals(expected)


def duplicate(groups: Groups, eligible: np.ndarray, submitted: Times) -> np.ndarray:
    """Among the ``eligible`` rows (those no other rule rejects), every row but the latest
    submission per respondent and cohort (a tie going to the later row)."""
    return groups.superseded(eligible, submitted.micros)


RULES: dict[str, Callable[[Parsed, CleanseRules], np.ndarray]] = {
    "missing_required": lambda p, _: missing_required(p.present),
    "unparseable": lambda p, _: unparseable(p.patients, p.started, p.submitted, p.shares),
    "unknown_cohort": lambda p, _: unknown_cohort(p.disease, p.cohort_index),
    "out_of_range": lambda p, r: out_of_range(p.patients, p.shares, r),
    "shares_not_100": lambda p, r: shares_not_100(p.shares, r),
    "speeder": lambda p, r: speeder(p.started, p.submitted, r),
    "attention_failed": lambda p, r: attention_failed(p.categories["attention_check"], r),
}
"""The rules but ``duplicate``, in ``REASONS`` order, applied to ``Parsed`` columns."""


def reason_bits(flags: Mapping[str, np.ndarray]) -> np.ndarray:
    """One uint8 per row, bit ``i`` set when ``REASONS[i]`` applies (0: cleansed)."""
    mask = np.zeros(len(next(iter(flags.values()))), dtype=np.uint8)
    for bit, reason in enumerate(REASONS):
        if reason in flags:
            mask |= flags[reason].view(np.uint8) << bit
    return mask
