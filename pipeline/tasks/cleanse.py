"""RawExport and CleanseSurvey: the raw export as delivered → cleansed rows per cohort,
rejections, summary and the run date's input pin."""

from __future__ import annotations

import contextlib
import difflib
import io
import tempfile
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import luigi
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from luigi.target import AtomicLocalFile

from pipeline import config, faults, metrics, storage
from pipeline.core import rawdata
from pipeline.core.cleanse import CleanseRules
from pipeline.core.cleanse.stream import REJECTIONS, cleanse_stream
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
    and ``summary.json`` (last). The export is cleansed a batch at a time
    (``cleanse_stream``): memory stays bounded whatever its size."""

    raw = RawParameter(default="", description="Raw export directory.")

    def requires(self) -> RawExport:
        return RawExport(raw=self.raw)

    def output(self) -> dict[str, luigi.target.FileSystemTarget]:
        layout = self.layout
        return {
            "pin": self.target(layout.pin()),
            "frame": self.target(layout.frame()),
            "rejections": self.target(layout.rejections()),
            "summary": self.target(layout.cleanse_summary()),
        }

    def run(self) -> None:
        self.report(f"reading {self.raw}", progress=0)
        export = rawdata.ExportStream(Path(self.raw))
        self.report("cleansing the responses batch by batch", progress=10)
        layout = self.layout
        # Every output is written as it is made, into an atomic target that lands only when
        # closed: a failed or killed cleansing leaves none of its files claimed as done.
        with tempfile.TemporaryDirectory(prefix="cleanse-spill-") as spill, ExitStack() as stack:
            sink = ParquetOutputs(layout, stack)
            key = config.respondent_key()
            summary = cleanse_stream(export, cleansing_rules(), key, sink, Path(spill))
            # the pin first, as the files were read: then the outputs land
            storage.write_json(layout.pin(), export.checksums)
            faults.point("cleanse.pinned")
            self.report("writing cleansed rows per cohort", progress=90)
            sink.close()
        storage.write_bytes(layout.frame(), export.frame.to_csv(index=False).encode())
        storage.write_json(layout.cleanse_summary(), summary)
        metrics.record_cleanse(summary)
        self.report(
            f"{summary['raw_rows']:,} rows: {summary['cleansed_rows']:,} cleansed, "
            f"{summary['rejected_rows']:,} rejected",
            progress=100,
        )


DICTIONARY_COLUMNS = frozenset(
    ("cohort", "specialty", "region", "facility_type", "attention_check", "reasons", "source_file")
)
# respondent_key is 32 random hex digits a row: snappy saved 10 % of its bytes at 80 % of
# its encoding time (the largest column of a cohort's file; 1 M-row sample export)
UNCOMPRESSED_COLUMNS = frozenset(("respondent_key",))
# no min/max statistics for the columns of unique, unordered text (the keyed hashes, the
# raw JSON) nor for the category columns (a row group holds nearly every specialty, region
# or reason; a cohort's file one cohort): no reader can skip a row group by them, and
# comparing every value cost a fifth of the encoding (1 M-row sample export)
NO_STATISTICS_COLUMNS = frozenset(("respondent_key", "raw")) | DICTIONARY_COLUMNS


class ParquetOutputs:
    """``cleanse_stream``'s sink: a Parquet writer per output (``cohorts/<code>.parquet``,
    ``rejections.parquet``), each into an atomic target. ``close`` lands them, the cohorts
    first (side by side), then the rejections; until then none of them exists, and what
    has not landed when ``stack`` closes (an error) never does."""

    def __init__(self, layout: Layout, stack: ExitStack) -> None:
        self.layout = layout
        self.writers: dict[str, pq.ParquetWriter] = {}
        self.targets: dict[str, AtomicLocalFile] = {}  # open until they land
        stack.callback(self._discard)

    def open(self, name: str, schema: pa.Schema) -> None:
        if name == REJECTIONS:
            uri = self.layout.rejections()
        else:
            uri = self.layout.cohort_input(name.removeprefix("cohorts/"))
        handle = self.targets[name] = storage.target(uri).open("w")
        # the schema pandas would write, so that readers get the frame pandas wrote before
        pandas = pa.Schema.from_pandas(schema.empty_table().to_pandas(), preserve_index=False)
        # dictionary pages only for the columns of few values (ids and JSON are unique: trying
        # a dictionary for them costs time and is dropped anyway)
        few = [c for c in schema.names if c in DICTIONARY_COLUMNS]
        self.writers[name] = pq.ParquetWriter(
            handle,
            schema.with_metadata(pandas.metadata),
            use_dictionary=few,
            compression={
                c: "none" if c in UNCOMPRESSED_COLUMNS else "snappy" for c in schema.names
            },
            write_statistics=[c for c in schema.names if c not in NO_STATISTICS_COLUMNS],
        )

    def write(self, name: str, table: pa.Table) -> None:
        self.writers[name].write_table(table)

    def close(self) -> None:
        cohorts = [name for name in self.writers if name != REJECTIONS]
        # Side by side: on S3 each cohort's file is an upload (a round trip, 20-50 ms on
        # AWS: 200 cohorts one after another would hold every check up by seconds), and
        # a writer's last row group is encoded as it closes (arrow releases the GIL).
        with ThreadPoolExecutor(LANDING_THREADS, thread_name_prefix="landing") as pool:
            for _ in pool.map(self._land, cohorts):
                faults.point("cleanse.cohort")
        if REJECTIONS in self.writers:
            self._land(REJECTIONS)

    def _land(self, name: str) -> None:
        self.writers[name].close()  # the Parquet footer: the target stays open
        self.targets.pop(name).close()  # it lands (a rename; on S3 the upload)

    def _discard(self) -> None:
        """What did not land (an error on the way) is dropped: its temp file goes."""
        for name, target in self.targets.items():
            with contextlib.suppress(Exception):
                self.writers[name].close()  # into the temp file (else when collected)
            io.BufferedWriter.close(target)  # closed without landing
            Path(target.tmp_path).unlink(missing_ok=True)
        self.targets.clear()


LANDING_THREADS = 16


def check_pinned(layout: Layout, raw: str) -> None:
    """Refuse to go on when the raw files differ from the ones the date was cleansed from."""
    pin_uri = layout.pin()
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
    summary_uri = layout.cleanse_summary()
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
