"""The estimation itself: DataFrames in, a DataFrame out; no files, no printing.

Each respondent reports ``n_patients`` and, per treatment, the percent of those patients on
it. Per respondent the targets are ``n_patients`` and ``n_patients * share / 100`` for every
treatment (a missing share counts as 0). One multi-output ridge regression on one-hot
segment features -- specialty, region, facility_type and their pairwise interactions --
predicts each target per physician of a segment. Interactions are penalised harder than
main effects, so a thinly surveyed cell is pulled towards what its specialty, region and
facility type say. A frame segment never surveyed, even one with a category value never
seen, is predicted from the terms that are known (unknown one-hot columns are ignored).
A population total is the sum over frame segments of ``n_physicians x prediction``, with
negative predictions clipped to 0.

Intervals come from a respondent bootstrap: respondents are drawn with replacement,
the model is refitted, and the 2.5 and 97.5 percentiles of the replicated totals bound a
95% interval. The point estimate is always the full-sample fit; when a percentile
interval does not contain it (possible for rare treatments, where clipping skews the
replicates) the interval is widened to reach it and ``ci_widened`` says so.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from estimator import DEFAULT_BOOTSTRAP, DEFAULT_SEED

SEGMENTS = ("specialty", "region", "facility_type")
SHARE_PREFIX = "share_"
SURVEY_COLUMNS = ("cohort", "respondent_key", *SEGMENTS, "n_patients")
FRAME_COLUMNS = (*SEGMENTS, "n_physicians")
RESULT_COLUMNS = (
    "treatment",
    "estimate",
    "ci_low",
    "ci_high",
    "share_pct",
    "share_pct_ci_low",
    "share_pct_ci_high",
    "n_respondents",
    "n_answered",
    "ci_widened",
)
MISSING_SEGMENT = "(missing)"
MAX_PATIENTS = 10_000
# Penalties in units of respondents: a main effect backed by a few dozen respondents is
# barely shrunk, an interaction cell with three respondents keeps about a quarter of its own
# deviation from the main effects.
MAIN_ALPHA = 1.0
INTERACTION_ALPHA = 10.0
INTERCEPT_SCALE = 1000.0
CI_PERCENTILES = (2.5, 97.5)
# The empty term is the intercept: one constant column.
TERMS: tuple[tuple[str, ...], ...] = (
    (),
    *((s,) for s in SEGMENTS),
    *itertools.combinations(SEGMENTS, 2),
)
MODEL_NAME = (
    "sklearn Ridge, multi-output, on one-hot specialty, region, facility_type and their "
    "pairwise interactions; respondent bootstrap"
)


class InputError(ValueError):
    """The input cannot be estimated from; the message names the source and the column."""


@dataclass(frozen=True)
class Survey:
    """A validated cohort survey, reduced to what the model needs."""

    treatments: tuple[str, ...]
    # rows x (1 + treatments): n_patients, then the patients on each treatment
    targets: np.ndarray
    segments: pd.DataFrame
    # integer code of each row's respondent: the unit the bootstrap resamples
    respondent: np.ndarray
    n_answered: tuple[int, ...]


@dataclass(frozen=True)
class Replicates:
    """Bootstrap replicates done so far (``values``: ``done`` rows) and the random
    generator's state after them: what a checkpoint holds."""

    done: int
    bootstrap: int
    seed: int
    values: np.ndarray
    rng_state: dict[str, Any]

    def fits(self, bootstrap: int, seed: int, columns: int) -> bool:
        """Whether a run of ``bootstrap`` replicates with ``seed`` can continue from it."""
        return (
            (self.bootstrap, self.seed) == (bootstrap, seed)
            and 0 < self.done <= bootstrap
            and self.values.shape[0] >= self.done
            and self.values.shape[1:] == (columns,)
        )


@dataclass(frozen=True)
class Estimation:
    """Result of :func:`estimate`: one row per treatment, and facts about the run."""

    estimates: pd.DataFrame
    diagnostics: dict[str, Any]


def _where(data: pd.DataFrame, position: int) -> str:
    """Name a row for an error message, with its raw file and line when the input has them."""
    label = f"row {position + 1}"
    if {"source_file", "source_row"} <= set(data.columns):
        file, line = data["source_file"].iloc[position], data["source_row"].iloc[position]
        if pd.notna(file) and pd.notna(line):
            label += f" ({file} line {line})"
    return label


def _show(value: Any) -> str:
    return repr(value.item() if isinstance(value, np.generic) else value)


def _require_columns(data: pd.DataFrame, columns: tuple[str, ...], source: str) -> None:
    missing = [c for c in columns if c not in data.columns]
    if missing:
        raise InputError(
            f"{source}: column {missing[0]!r} is missing"
            + (f" (also missing: {', '.join(missing[1:])})" if missing[1:] else "")
        )


def _numbers(
    data: pd.DataFrame,
    column: str,
    source: str,
    *,
    low: float,
    high: float | None = None,
    allow_missing: bool = False,
) -> np.ndarray:
    """The column as floats; any unparseable, missing (unless allowed) or out-of-range
    value is an ``InputError`` naming the column, how many values and the first one."""
    raw = data[column]
    values = pd.to_numeric(raw, errors="coerce").astype("float64").to_numpy()
    present = raw.notna().to_numpy()
    unparseable = np.isnan(values) & present
    problems = [(unparseable, "not a number")]
    if not allow_missing:
        problems.append((~present, "empty"))
    in_range = ~np.isnan(values) & np.isfinite(values) & (values >= low)
    if high is not None:
        in_range &= values <= high
    bounds = f"{low:g}..{high:g}" if high is not None else f">= {low:g}"
    problems.append((~np.isnan(values) & ~in_range, f"outside {bounds}"))
    for bad, what in problems:
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise InputError(
                f"{source}: column {column!r}: {int(bad.sum())} value(s) {what} "
                f"(first: {_where(data, first)}, value {_show(raw.iloc[first])})"
            )
    return values


def _segments(data: pd.DataFrame) -> pd.DataFrame:
    # Missing segment values form their own category rather than dropping respondents.
    return pd.DataFrame(
        {
            s: data[s].astype("string").str.strip().fillna(MISSING_SEGMENT).to_numpy(dtype=object)
            for s in SEGMENTS
        }
    )


def prepare_survey(
    survey: pd.DataFrame, source: str = "survey", cohort: str | None = None
) -> Survey:
    """Check a cohort's cleansed rows and turn them into model targets.

    Treatments are the ``share_<treatment>`` columns with at least one value; all-empty
    ones are ignored. Raises ``InputError`` naming ``source`` and the column at fault.
    """
    _require_columns(survey, SURVEY_COLUMNS, source)
    if survey.empty:
        raise InputError(f"{source}: no rows to estimate from")
    share_columns = [c for c in survey.columns if str(c).startswith(SHARE_PREFIX)]
    if SHARE_PREFIX in share_columns:
        raise InputError(f"{source}: column {SHARE_PREFIX!r} has no treatment name")
    answered = [c for c in share_columns if survey[c].notna().any()]
    if not answered:
        raise InputError(
            f"{source}: column 'share_<treatment>': no share column with any value"
            + (f" (all empty: {', '.join(share_columns)})" if share_columns else "")
        )
    if cohort is not None:
        other = (survey["cohort"].astype("string") != cohort).fillna(True).to_numpy()
        if other.any():
            first = int(np.flatnonzero(other)[0])
            value = _show(survey["cohort"].iloc[first])
            raise InputError(
                f"{source}: column 'cohort': {int(other.sum())} row(s) are not of cohort "
                f"{cohort!r} (first: {_where(survey, first)}, value {value})"
            )
    patients = _numbers(survey, "n_patients", source, low=0, high=MAX_PATIENTS)
    if not patients.any():
        raise InputError(f"{source}: column 'n_patients': every value is 0, nothing to estimate")
    shares = [_numbers(survey, c, source, low=0, high=100, allow_missing=True) for c in answered]
    targets = np.column_stack(
        [patients, *(patients * np.nan_to_num(share, nan=0.0) / 100.0 for share in shares)]
    )
    # A row without a respondent key still counts as one respondent of its own.
    keys = survey["respondent_key"].astype("string")
    keys = keys.fillna(pd.Series([f"\0row{i}" for i in range(len(keys))], index=keys.index))
    respondent, _ = pd.factorize(keys.to_numpy(dtype=object))
    return Survey(
        treatments=tuple(c.removeprefix(SHARE_PREFIX) for c in answered),
        targets=targets,
        segments=_segments(survey),
        respondent=respondent.astype(np.intp),
        n_answered=tuple(int(survey[c].notna().sum()) for c in answered),
    )


def prepare_frame(frame: pd.DataFrame, source: str = "frame") -> pd.DataFrame:
    """Check the physician population frame: segments and ``n_physicians`` (float)."""
    _require_columns(frame, FRAME_COLUMNS, source)
    if frame.empty:
        raise InputError(f"{source}: no rows: the physician population is empty")
    physicians = _numbers(frame, "n_physicians", source, low=0)
    if not physicians.any():
        raise InputError(f"{source}: column 'n_physicians': every value is 0")
    return _segments(frame).assign(n_physicians=physicians)


def _term_table(segments: pd.DataFrame) -> np.ndarray:
    """One column per model term: the segment's value (joined values for interactions)."""
    columns = []
    for term in TERMS:
        values = pd.Series("", index=segments.index, dtype=object)
        for name in term:
            values = values + "\x1f" + segments[name].astype(str)
        columns.append(values.to_numpy(dtype=object))
    return np.column_stack(columns)


class _Design:
    """Sparse one-hot features of segments, fitted on the surveyed cells only."""

    def __init__(self, cells: pd.DataFrame) -> None:
        from sklearn.preprocessing import OneHotEncoder

        self.encoder = OneHotEncoder(handle_unknown="ignore", sparse_output=True)
        self.encoder.fit(_term_table(cells))
        # Ridge has one alpha; scaling a column up by s divides its penalty by s**2. That
        # gives main effects MAIN_ALPHA, interactions INTERACTION_ALPHA and the intercept
        # (an explicit constant column, so the fast sparse Cholesky solver can be used)
        # next to none.
        self.scale = np.concatenate(
            [
                np.full(len(categories), _term_scale(term))
                for term, categories in zip(TERMS, self.encoder.categories_, strict=True)
            ]
        )

    def features(self, segments: pd.DataFrame) -> Any:
        """A scipy CSR matrix: one row per segment."""
        return self.encoder.transform(_term_table(segments)).multiply(self.scale).tocsr()


def _term_scale(term: tuple[str, ...]) -> float:
    if not term:
        return INTERCEPT_SCALE
    if len(term) == 1:
        return float(np.sqrt(INTERACTION_ALPHA / MAIN_ALPHA))
    return 1.0


def _population_totals(
    x_cells: Any,
    cell_of_row: np.ndarray,
    weights: np.ndarray,
    targets: np.ndarray,
    x_frame: Any,
    physicians: np.ndarray,
) -> np.ndarray:
    """Fit on (weighted) respondents and return each target's population total.

    Respondents of one cell share their features, so the weighted fit on per-cell means
    with per-cell weights has the same solution as the fit on the rows, at the cost of the
    number of cells rather than respondents.
    """
    from sklearn.linear_model import Ridge

    n_cells = x_cells.shape[0]
    cell_weight = np.bincount(cell_of_row, weights=weights, minlength=n_cells)
    cell_sums = np.column_stack(
        [
            np.bincount(cell_of_row, weights=weights * targets[:, j], minlength=n_cells)
            for j in range(targets.shape[1])
        ]
    )
    drawn = cell_weight > 0
    means = cell_sums[drawn] / cell_weight[drawn, None]
    ridge = Ridge(alpha=INTERACTION_ALPHA, fit_intercept=False, solver="cholesky")
    fit = ridge.fit(x_cells[drawn], means, sample_weight=cell_weight[drawn])
    per_physician = np.clip(fit.predict(x_frame), 0.0, None)
    return physicians @ per_physician


def estimate(
    survey: pd.DataFrame,
    frame: pd.DataFrame,
    *,
    bootstrap: int = DEFAULT_BOOTSTRAP,
    seed: int = DEFAULT_SEED,
    cohort: str | None = None,
    survey_source: str = "survey",
    frame_source: str = "frame",
    progress: Callable[[str], None] | None = None,
    resume: Replicates | None = None,
    checkpoint: Callable[[Replicates], None] | None = None,
) -> Estimation:
    """Estimate the patients on each treatment in the physician population ``frame``
    from a cohort's cleansed ``survey`` rows, with ``bootstrap`` replicates for the 95%
    intervals. The same inputs and ``seed`` give identical estimates.

    Returns one row per treatment (:data:`RESULT_COLUMNS`); ``share_pct*`` are the
    treatment's percent of all patients. Raises ``InputError`` for unusable input.

    Resuming: ``checkpoint`` is called after every replicate with the replicates done so
    far and the generator's state after them; ``resume`` (such a ``Replicates`` of the
    same inputs, ``bootstrap`` and ``seed``) skips the replicates it holds and continues
    the generator from its state, so a resumed run draws exactly the numbers an
    uninterrupted one draws and gives identical results.
    """
    if bootstrap < 1:
        raise ValueError(f"bootstrap must be at least 1, got {bootstrap}")
    started = time.perf_counter()
    say = progress or (lambda _message: None)
    data = prepare_survey(survey, survey_source, cohort)
    population = prepare_frame(frame, frame_source)

    cell_keys = pd.MultiIndex.from_frame(data.segments)
    cell_of_row, cells = pd.factorize(cell_keys)
    cells = cells.to_frame(index=False, name=list(SEGMENTS))
    design = _Design(cells)
    x_cells, x_frame = design.features(cells), design.features(population)
    physicians = population["n_physicians"].to_numpy()
    surveyed = pd.MultiIndex.from_frame(population[list(SEGMENTS)]).isin(cell_keys)

    def totals(weights: np.ndarray) -> np.ndarray:
        return _population_totals(x_cells, cell_of_row, weights, data.targets, x_frame, physicians)

    say(
        f"fitting: {len(data.targets)} rows, {len(cells)} surveyed cells, "
        f"{len(population)} frame segments, treatments: {', '.join(data.treatments)}"
    )
    point = totals(np.ones(len(data.targets)))

    rng = np.random.default_rng(seed)
    n_respondents = int(data.respondent.max()) + 1
    replicates = np.empty((bootstrap, len(point)))
    every = max(1, bootstrap // 10)
    first = 0
    if resume is not None and resume.fits(bootstrap, seed, replicates.shape[1]):
        first = resume.done
        replicates[:first] = resume.values[:first]
        rng.bit_generator.state = resume.rng_state
        say(f"bootstrap: resuming after {first}/{bootstrap} replicates from the checkpoint")
    for b in range(first, bootstrap):
        draws = np.bincount(rng.integers(0, n_respondents, n_respondents), minlength=n_respondents)
        replicates[b] = totals(draws[data.respondent].astype(np.float64))
        if checkpoint is not None:
            checkpoint(Replicates(b + 1, bootstrap, seed, replicates[: b + 1],
                                  rng.bit_generator.state))  # fmt: skip
        if (b + 1) % every == 0 or b + 1 == bootstrap:
            say(f"bootstrap {b + 1}/{bootstrap}")

    estimates = _summarise(data, point, replicates)
    diagnostics = {
        "rows": len(data.targets),
        "respondents": n_respondents,
        "treatments": list(data.treatments),
        "model": MODEL_NAME,
        "alpha_main": MAIN_ALPHA,
        "alpha_interaction": INTERACTION_ALPHA,
        "features": int(x_cells.shape[1]) - 1,
        "surveyed_cells": len(cells),
        "frame_segments": len(population),
        "frame_segments_unsurveyed": int((~surveyed).sum()),
        "frame_physicians": float(physicians.sum()),
        "physicians_in_surveyed_segments_pct": round(
            100.0 * float(physicians[surveyed].sum()) / float(physicians.sum()), 3
        ),
        "patients_estimate": round(float(point[0]), 1),
        "bootstrap": bootstrap,
        "bootstrap_resumed": first,
        "seed": seed,
        "ci_percentiles": list(CI_PERCENTILES),
        "ci_widened": estimates.loc[estimates["ci_widened"], "treatment"].tolist(),
        "fit_seconds": round(time.perf_counter() - started, 3),
    }
    return Estimation(estimates=estimates, diagnostics=diagnostics)


def _interval(
    point: np.ndarray, replicates: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Percentile interval, widened where needed to contain the point estimate."""
    low, high = np.percentile(replicates, CI_PERCENTILES, axis=0)
    widened = (point < low) | (point > high)
    return np.minimum(low, point), np.maximum(high, point), widened


def _summarise(data: Survey, point: np.ndarray, replicates: np.ndarray) -> pd.DataFrame:
    patients, patients_replicated = point[1:], replicates[:, 1:]
    low, high, widened = _interval(patients, patients_replicated)
    # Shares relative to the modelled total of patients, replicate by replicate.
    share = 100.0 * patients / point[0] if point[0] > 0 else np.zeros_like(patients)
    share_replicated = 100.0 * np.divide(
        patients_replicated,
        replicates[:, :1],
        out=np.zeros_like(patients_replicated),
        where=replicates[:, :1] > 0,
    )
    share_low, share_high, share_widened = _interval(share, share_replicated)
    table = pd.DataFrame(
        {
            "treatment": list(data.treatments),
            "estimate": patients.round(1),
            "ci_low": low.round(1),
            "ci_high": high.round(1),
            "share_pct": share.round(3),
            "share_pct_ci_low": share_low.round(3),
            "share_pct_ci_high": share_high.round(3),
            "n_respondents": int(data.respondent.max()) + 1,
            "n_answered": list(data.n_answered),
            "ci_widened": widened | share_widened,
        }
    )
    return table[list(RESULT_COLUMNS)]
