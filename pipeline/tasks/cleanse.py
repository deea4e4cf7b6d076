"""RawExport and CleanseSurvey: the raw export as delivered → cleansed rows per cohort,
rejections, summary and the run date's input pin."""

from __future__ import annotations

import difflib
from pathlib import Path

import luigi
import pandas as pd

from pipeline import config, faults, metrics, storage
from pipeline.core import rawdata
from pipeline.core.cleanse import CleanseRules, cleanse
from pipeline.errors import InputError, PinnedInputsError
from pipeline.layout import Layout
from pipeline.tasks.base import RunDateTask
from pipeline.tasks.params import RawParameter


def cleansing_rules() -> CleanseRules:
    """The ``[cleansing]`` settings of luigi.cfg."""
    return CleanseRules(
        min_duration_seconds=config.get_float("cleansing", "min_duration_seconds", 120),
        attention_expected=config.get("cleansing", "attention_expected", "3"),
        n_patients_min=config.get_float("cleansing", "n_patients_min", 0),
        n_patients_max=config.get_float("cleansing", "n_patients_max", 10000),
        share_min=config.get_float("cleansing", "share_min", 0),
        share_max=config.get_float("cleansing", "share_max", 100),
        share_sum_tolerance=config.get_float("cleansing", "share_sum_tolerance", 1),
    )


class RawExport(luigi.ExternalTask):
    """The survey system's export: a directory of CSV files with ``cohorts.csv``. The
    pipeline never writes here."""

    raw = RawParameter(default="", description="Raw export directory.")

    def output(self) -> luigi.LocalTarget:
        return luigi.LocalTarget(str(Path(self.raw) / rawdata.COHORTS_FILE))


class CleanseSurvey(RunDateTask):
    """Reads every raw CSV of ``raw`` as delivered and writes, under ``<run_date>/cleanse/``:
    ``cohorts/<code>.parquet`` per cohort (the program's input), ``frame.csv``,
    ``rejections.parquet``, ``inputs.json`` (the raw files' checksums: the run date's pin)
    and ``summary.json`` (last)."""

    raw = RawParameter(default="", description="Raw export directory.")

    def requires(self) -> RawExport:
        return RawExport(raw=self.raw)

    def output(self) -> dict[str, luigi.target.FileSystemTarget]:
        return {
            name: self.target(self.layout.cleanse(name))
            for name in ("inputs.json", "frame.csv", "rejections.parquet", "summary.json")
        }

    def run(self) -> None:
        self.report(f"reading {self.raw}", progress=0)
        export = rawdata.read_raw_export(Path(self.raw))
        self.report(f"cleansing {len(export.responses):,} rows", progress=30)
        result = cleanse(export, cleansing_rules(), config.respondent_key())
        self.report("writing cleansed rows per cohort", progress=70)
        layout = self.layout
        storage.write_json(layout.cleanse("inputs.json"), export.files)
        share_columns = [c for c in result.cleansed.columns if c.startswith("share_")]
        for code in export.cohorts["code"]:
            rows = result.cleansed[result.cleansed["cohort"] == code]
            # A cohort's treatments are the share columns its respondents answered.
            unused = [c for c in share_columns if rows[c].isna().all()]
            storage.write_parquet(layout.cohort_input(code), rows.drop(columns=unused))
            faults.point("cleanse.cohort")
        storage.write_bytes(layout.cleanse("frame.csv"), export.frame.to_csv(index=False).encode())
        storage.write_parquet(layout.cleanse("rejections.parquet"), result.rejections)
        storage.write_json(layout.cleanse("summary.json"), result.summary)
        metrics.record_cleanse(result.summary)
        self.report(
            f"{result.summary['raw_rows']:,} rows: {result.summary['cleansed_rows']:,} cleansed, "
            f"{result.summary['rejected_rows']:,} rejected",
            progress=100,
        )


def check_pinned(layout: Layout, raw: str) -> None:
    """Refuse to go on when the raw files differ from the ones the date was cleansed from."""
    pin_uri = layout.cleanse("inputs.json")
    if not storage.exists(pin_uri):
        return
    if not Path(raw).is_dir():
        return  # the export is gone: what was cleansed from it is pinned, nothing to compare
    pinned: dict[str, str] = storage.read_json(pin_uri)
    current = rawdata.checksums(Path(raw))
    changes = sorted(
        [f"{name} changed" for name in pinned if name in current and current[name] != pinned[name]]
        + [f"{name} removed" for name in pinned if name not in current]
        + [f"{name} added" for name in current if name not in pinned]
    )
    if changes:
        date = layout.run_date
        raise PinnedInputsError(
            f"the raw files in {raw} differ from the ones run date {date} was cleansed from "
            f"({'; '.join(changes[:5])}{'; ...' if len(changes) > 5 else ''}): use a new "
            f"--run-date, or re-run from cleansing on purpose with "
            f"`pipeline rerun --run-date {date} --from cleanse`"
        )


def known_cohorts(layout: Layout, raw: str) -> pd.DataFrame:
    """The run date's cohorts (code, label): from its cleansing summary once it has been
    cleansed (pinned), else from the raw ``cohorts.csv``."""
    summary_uri = layout.cleanse("summary.json")
    if storage.exists(summary_uri):
        cohorts = storage.read_json(summary_uri)["cohorts"]
        return pd.DataFrame(
            [(code, info["label"]) for code, info in cohorts.items()], columns=["code", "label"]
        )
    return rawdata.read_cohorts(Path(raw))


def refuse_unknown_cohorts(asked: list[str], known: list[str], *, file: str | None) -> None:
    """Raise ``InputError`` for codes not in ``known``, naming the close ones."""
    unknown = [code for code in asked if code not in known]
    if not unknown:
        return
    hints = [
        f"{code} (did you mean {', '.join(close)}?)" if close else code
        for code in unknown
        for close in [difflib.get_close_matches(code, known, n=2)]
    ]
    raise InputError(
        f"unknown cohort {'; '.join(hints)}; known: {', '.join(sorted(known))}", file=file
    )
