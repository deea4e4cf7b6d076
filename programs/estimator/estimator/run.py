"""Files around the estimation: read the cohort's rows and the frame, call
:func:`estimator.model.estimate`, write ``estimates.csv`` and ``diagnostics.json``.

With a checkpoint directory the bootstrap can resume: the replicates done so far and the
random generator's state after them are written to ``bootstrap.npz`` there (at most once
a second, and at once on SIGTERM, after which the run stops with exit 143); a later run
with the same directory, inputs, ``bootstrap`` and ``seed`` skips them and gives the same
results as an uninterrupted run, byte for byte."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from estimator import DEFAULT_BOOTSTRAP, DEFAULT_SEED, __version__
from estimator.model import InputError, Replicates, estimate

RESULTS = "estimates.csv"
DIAGNOSTICS = "diagnostics.json"
CHECKPOINT = "bootstrap.npz"
CHECKPOINT_EVERY = 1.0  # seconds between checkpoint writes (and at once on SIGTERM)
EXIT_STOPPED = 143  # 128 + SIGTERM


class Stopped(Exception):
    """SIGTERM arrived; the checkpoint holds every replicate done."""


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


def load_checkpoint(directory: Path, log: Callable[[str], None] = print) -> Replicates | None:
    """The replicates in ``directory``'s checkpoint, or None (none, or unreadable)."""
    path = directory / CHECKPOINT
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            return Replicates(
                done=int(meta["done"]),
                bootstrap=int(meta["bootstrap"]),
                seed=int(meta["seed"]),
                values=np.array(data["values"], dtype=np.float64),
                rng_state=meta["rng_state"],
            )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log(f"checkpoint {path} is unreadable ({_first_line(exc)}): starting from the beginning")
        return None


def _save_checkpoint(directory: Path, replicates: Replicates) -> None:
    meta = {
        "done": replicates.done,
        "bootstrap": replicates.bootstrap,
        "seed": replicates.seed,
        "rng_state": replicates.rng_state,
        "version": __version__,
    }
    partial = directory / f".{CHECKPOINT}.partial"  # a dot file: never uploaded half-written
    with partial.open("wb") as fh:
        np.savez(fh, values=replicates.values, meta=np.array(json.dumps(meta)))
    os.replace(partial, directory / CHECKPOINT)


def _checkpointer(directory: Path, log: Callable[[str], None]) -> Callable[[Replicates], None]:
    """The ``checkpoint`` callback of :func:`estimate`: writes at most every
    ``CHECKPOINT_EVERY`` seconds; after a SIGTERM it writes at once and raises ``Stopped``."""
    directory.mkdir(parents=True, exist_ok=True)
    stop = {"requested": False, "last": time.monotonic()}

    def on_sigterm(_signum: int, _frame: object) -> None:
        stop["requested"] = True

    signal.signal(signal.SIGTERM, on_sigterm)

    def save(replicates: Replicates) -> None:
        now = time.monotonic()
        if stop["requested"] or now - stop["last"] >= CHECKPOINT_EVERY:
            _save_checkpoint(directory, replicates)
            stop["last"] = now
        if stop["requested"]:
            log(f"SIGTERM: checkpoint holds {replicates.done}/{replicates.bootstrap} replicates")
            raise Stopped(f"stopped after {replicates.done} replicates")

    return save


def run(
    input_path: str | Path,
    frame_path: str | Path,
    cohort: str,
    output_dir: str | Path,
    *,
    bootstrap: int = DEFAULT_BOOTSTRAP,
    seed: int = DEFAULT_SEED,
    log: Callable[[str], None] = print,
    checkpoint_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Read ``input_path`` and ``frame_path``, estimate, and write ``estimates.csv`` and
    ``diagnostics.json`` under ``output_dir``. The results file is written last, so its
    presence means the run finished. Returns the diagnostics.

    Raises ``InputError`` (nothing is written) or ``OutputError``; messages name the file;
    ``Stopped`` after a SIGTERM when ``checkpoint_dir`` is given (the checkpoint is saved).
    """
    started = time.perf_counter()
    input_path, frame_path, output_dir = Path(input_path), Path(frame_path), Path(output_dir)
    log(f"estimator {__version__}: cohort {cohort}: reading {input_path} and {frame_path}")
    survey = read_survey(input_path)
    frame = read_frame(frame_path)
    resume, checkpoint = None, None
    if checkpoint_dir is not None:
        resume = load_checkpoint(Path(checkpoint_dir), log)
        checkpoint = _checkpointer(Path(checkpoint_dir), log)
    result = estimate(
        survey,
        frame,
        bootstrap=bootstrap,
        seed=seed,
        cohort=cohort,
        survey_source=str(input_path),
        frame_source=str(frame_path),
        progress=log,
        resume=resume,
        checkpoint=checkpoint,
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
