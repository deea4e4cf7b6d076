"""Files around the estimation: read the cohort's rows and the frame, call
:func:`estimator.model.estimate`, write ``estimates.csv`` and ``diagnostics.json``."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from estimator import DEFAULT_BOOTSTRAP, DEFAULT_SEED, __version__
from estimator.model import InputError, estimate

RESULTS = "estimates.csv"
DIAGNOSTICS = "diagnostics.json"


class OutputError(OSError):
    """The output directory or a result file could not be written."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def read_survey(path: Path) -> pd.DataFrame:
    """The cohort's cleansed rows from ``.parquet`` or ``.csv`` (UTF-8), by file extension."""
    suffix = path.suffix.lower()
    if suffix not in (".parquet", ".csv"):
        raise InputError(
            f"{path}: unsupported input type {suffix or '(none)'!r}: use .parquet or .csv"
        )
    if not path.is_file():
        raise InputError(f"{path}: input file not found")
    try:
        if suffix == ".parquet":
            return pd.read_parquet(path)
        # As text: numbers are checked column by column so an error can name the value.
        return pd.read_csv(
            path, dtype=str, encoding="utf-8-sig", keep_default_na=False, na_values=[""]
        )
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise InputError(f"{path}: cannot read as {suffix[1:]}: {_first_line(exc)}") from None


def read_frame(path: Path) -> pd.DataFrame:
    """The physician population frame, a UTF-8 CSV."""
    if not path.is_file():
        raise InputError(f"{path}: frame file not found")
    try:
        return pd.read_csv(
            path, dtype=str, encoding="utf-8-sig", keep_default_na=False, na_values=[""]
        )
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read as csv: {_first_line(exc)}") from None


def _write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    partial = path.with_name(f".{path.name}.partial")
    try:
        write(partial)
        os.replace(partial, path)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise OutputError(f"{path}: cannot write: {_first_line(exc)}") from None


def run(
    input_path: str | Path,
    frame_path: str | Path,
    cohort: str,
    output_dir: str | Path,
    *,
    bootstrap: int = DEFAULT_BOOTSTRAP,
    seed: int = DEFAULT_SEED,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Read ``input_path`` and ``frame_path``, estimate, and write ``estimates.csv`` and
    ``diagnostics.json`` under ``output_dir``. The results file is written last, so its
    presence means the run finished. Returns the diagnostics.

    Raises ``InputError`` (nothing is written) or ``OutputError``; messages name the file.
    """
    started = time.perf_counter()
    input_path, frame_path, output_dir = Path(input_path), Path(frame_path), Path(output_dir)
    log(f"estimator {__version__}: cohort {cohort}: reading {input_path} and {frame_path}")
    survey = read_survey(input_path)
    frame = read_frame(frame_path)
    result = estimate(
        survey,
        frame,
        bootstrap=bootstrap,
        seed=seed,
        cohort=cohort,
        survey_source=str(input_path),
        frame_source=str(frame_path),
        progress=log,
    )
    diagnostics = {
        "program": "estimator",
        "version": __version__,
        "cohort": cohort,
        "input": str(input_path),
        "frame": str(frame_path),
        **result.diagnostics,
        "runtime_seconds": round(time.perf_counter() - started, 3),
    }
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{output_dir}: cannot create: {_first_line(exc)}") from None
    _write_atomically(
        output_dir / DIAGNOSTICS,
        lambda p: p.write_text(json.dumps(diagnostics, indent=2) + "\n", encoding="utf-8"),
    )
    _write_atomically(
        output_dir / RESULTS, lambda p: result.estimates.to_csv(p, index=False, encoding="utf-8")
    )
    for row in result.estimates.itertuples(index=False):
        log(f"  {row.treatment}: {row.estimate:,.0f} [{row.ci_low:,.0f}, {row.ci_high:,.0f}]")
    log(f"wrote {output_dir / RESULTS} in {diagnostics['runtime_seconds']:.2f}s")
    return diagnostics
