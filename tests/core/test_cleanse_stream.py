"""Streamed cleansing (``cleanse_stream`` over ``ExportStream``) against the reference:
``cleanse(read_raw_export(...))`` on the same export gives the same summary, the same
rejections in the same order and, per cohort, the same cleansed frame that
``CleanseSurvey`` used to write (the unused share columns dropped)."""

from __future__ import annotations

import io
import threading
from contextlib import ExitStack
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.core.cleanse import CleanseRules, cleanse
from pipeline.core.cleanse import stream as spilling
from pipeline.core.cleanse.stream import REJECTIONS, cleanse_stream, cohort_output
from pipeline.core.rawdata import ExportStream, read_raw_export
from pipeline.core.rawdata import stream as streaming
from pipeline.errors import ConfigError, InputError
from pipeline.layout import Layout
from pipeline.sampledata import generate
from pipeline.tasks.cleanse import ParquetOutputs

KEY = b"test-key-not-a-secret"


class MemorySink:
    """Collects what ``cleanse_stream`` writes, checking every piece against its schema."""

    def __init__(self) -> None:
        self.schemas: dict[str, pa.Schema] = {}
        self.tables: dict[str, list[pa.Table]] = {}

    def open(self, name: str, schema: pa.Schema) -> None:
        assert name not in self.schemas
        self.schemas[name], self.tables[name] = schema, []

    def write(self, name: str, table: pa.Table) -> None:
        assert table.schema.equals(self.schemas[name]), name
        self.tables[name].append(table)

    def frame(self, name: str) -> pd.DataFrame:
        pieces = [b for table in self.tables[name] for b in table.to_batches()]
        return pa.Table.from_batches(pieces, self.schemas[name]).to_pandas()


def _streamed(raw: Path, tmp_path: Path) -> tuple[dict, MemorySink]:
    sink = MemorySink()
    spill = tmp_path / "spill"
    spill.mkdir(exist_ok=True)
    summary = cleanse_stream(ExportStream(raw), CleanseRules(), KEY, sink, spill)
    return summary, sink


def _assert_same_as_reference(raw: Path, tmp_path: Path) -> dict:
    summary, sink = _streamed(raw, tmp_path)
    reference = cleanse(read_raw_export(raw), CleanseRules(), KEY)
    assert summary == reference.summary
    pd.testing.assert_frame_equal(
        sink.frame(REJECTIONS), reference.rejections.reset_index(drop=True)
    )
    shares = [c for c in reference.cleansed.columns if c.startswith("share_")]
    assert set(sink.schemas) == {REJECTIONS, *map(cohort_output, summary["cohorts"])}
    for code in summary["cohorts"]:
        rows = reference.cleansed[reference.cleansed["cohort"] == code]
        expected = rows.drop(columns=[c for c in shares if rows[c].isna().all()])
        pd.testing.assert_frame_equal(
            sink.frame(cohort_output(code)), expected.reset_index(drop=True)
        )
    return summary


@pytest.mark.parametrize("batch_bytes", [streaming.BATCH_BYTES, 16 << 10])
def test_the_sample_export_streams_to_the_reference_outputs(
    batch_bytes: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(streaming, "BATCH_BYTES", batch_bytes)  # small: many batches a file
    generate(tmp_path / "raw", respondents=1500, seed=3)
    summary = _assert_same_as_reference(tmp_path / "raw", tmp_path)
    assert summary["rejections_by_reason"]["duplicate"] > 0
    assert summary["cleansed_rows"] > 0


def _export(raw: Path, responses: dict[str, bytes]) -> None:
    (raw / "responses").mkdir(parents=True)
    (raw / "cohorts.csv").write_text("code,label\ndiabetes,糖尿病\nasthma,喘息\n")
    (raw / "frame.csv").write_text(
        "specialty,region,facility_type,n_physicians\n内科,関東,病院,10\n"
    )
    for name, data in responses.items():
        (raw / "responses" / name).write_bytes(data)


HEADER = (
    "response_id,respondent_id,disease,specialty,region,facility_type,started_at,"
    "submitted_at,n_patients,attention_check,share_a,share_b\n"
)


def _row(i: int, respondent: str, note: str = "") -> str:
    return (
        f"R{i},{respondent},diabetes,内科,関東,病院,2024-06-01T10:00:00,"
        f"2024-06-01T10:{10 + i % 40:02d}:00,{i % 50},3,60,40{note}\n"
    )


def test_a_cp932_file_that_starts_as_ascii_is_read_again_as_cp932(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(streaming, "BATCH_BYTES", 16 << 10)
    ascii_rows = "".join(
        _row(i, f"D{i % 700}").replace("内科,関東,病院", "im,kanto,h") for i in range(1500)
    )
    late = "".join(_row(i, f"D{i}") for i in range(1500, 1600))  # Japanese: CP932 bytes
    data = (HEADER + ascii_rows + late).encode("cp932")
    assert len(HEADER + ascii_rows) > 1 << 16  # past what decides the encoding up front
    _export(tmp_path / "raw", {"wave1.csv": data})
    summary = _assert_same_as_reference(tmp_path / "raw", tmp_path)
    assert summary["raw_rows"] == 1600


def test_source_rows_count_lines_of_values_that_span_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(streaming, "BATCH_BYTES", 16 << 10)
    rows = [_row(i, f"D{i % 300}") for i in range(800)]
    rows[400] = rows[400].replace(",3,60,40", ',"3\n",60,40')  # a line break inside a value
    rows.insert(600, "\n")  # and a blank line
    _export(tmp_path / "raw", {"wave1.csv": (HEADER + "".join(rows)).encode()})
    summary, sink = _streamed(tmp_path / "raw", tmp_path)
    _assert_same_as_reference(tmp_path / "raw", tmp_path)
    cleansed = sink.frame(cohort_output("diabetes"))
    assert cleansed["source_row"].iloc[-1] == 2 + 800 + 1  # one more line each
    assert summary["raw_rows"] == 800


def test_more_cohorts_than_a_byte_holds_stream_to_the_reference_outputs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the kept cohort number is as small as the cohorts allow: past 256 it takes two bytes
    monkeypatch.setattr(streaming, "BATCH_BYTES", 16 << 10)
    codes = [f"c{i:03d}" for i in range(300)]
    rows = [
        _row(i, f"D{i % 400}").replace(",diabetes,", f",{codes[(i * 7) % 300]},")
        for i in range(2400)
    ]
    _export(tmp_path / "raw", {"wave1.csv": (HEADER + "".join(rows)).encode()})
    cohorts = "".join(f"{code},{code}\n" for code in codes)
    (tmp_path / "raw" / "cohorts.csv").write_text("code,label\n" + cohorts)
    summary = _assert_same_as_reference(tmp_path / "raw", tmp_path)
    assert summary["rejections_by_reason"]["duplicate"] > 0
    assert summary["cohorts"]["c299"]["cleansed"] > 0


def test_a_malformed_record_in_a_later_batch_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(streaming, "BATCH_BYTES", 16 << 10)
    rows = [_row(i, f"D{i}") for i in range(900)]
    rows[700] = rows[700].replace(",3,60,40", ",3,60")
    _export(tmp_path / "raw", {"wave1.csv": (HEADER + "".join(rows)).encode()})
    with pytest.raises(InputError, match=r"wave1\.csv, row 702: malformed CSV line"):
        _streamed(tmp_path / "raw", tmp_path)


def test_outputs_land_only_when_every_one_is_complete(tmp_path: Path) -> None:
    layout = Layout(str(tmp_path / "work"), "2026-11-22")
    schema = pa.schema([("cohort", pa.large_string())])
    with pytest.raises(InputError), ExitStack() as stack:
        sink = ParquetOutputs(layout, stack)
        sink.open(cohort_output("diabetes"), schema)
        sink.open(REJECTIONS, schema)
        sink.write(cohort_output("diabetes"), pa.table({"cohort": pa.array(["a"], schema[0].type)}))
        raise InputError("a later file is malformed")
    # nothing landed under its own name, and no temporary file is left
    assert not [p for p in (tmp_path / "work").rglob("*") if p.is_file()]

    codes = [f"cohort-{i:02d}" for i in range(40)]
    with ExitStack() as stack:
        sink = ParquetOutputs(layout, stack)
        for code in codes:
            sink.open(cohort_output(code), schema)
            sink.write(cohort_output(code), pa.table({"cohort": pa.array([code], schema[0].type)}))
        sink.open(REJECTIONS, schema)
        assert not Path(layout.cohort_input(codes[0])).exists()
        sink.close()
        # landed when close() returns (side by side), not later with the stack
        for code in codes:
            written = Path(layout.cohort_input(code)).read_bytes()
            assert pq.read_table(io.BytesIO(written)).to_pandas()["cohort"].tolist() == [code]
        assert Path(layout.rejections()).exists()
    assert sorted(p.name for p in (tmp_path / "work").rglob("*") if p.is_file()) == sorted(
        [f"{code}.parquet" for code in codes] + ["rejections.parquet"]
    )


def _rows(count: int) -> str:
    return "".join(_row(i, f"D{i % 5}") for i in range(count))


@pytest.mark.parametrize(
    "files",
    [
        {"a.csv": HEADER.encode(), "b.csv": (HEADER + _row(1, "D1")).encode()},
        {"a.csv": HEADER.encode()},
        {"a.csv": (HEADER + _rows(50)).replace("\n", "\r\n").encode("utf-8-sig")},
        {"a.csv": (HEADER + _rows(50)).rstrip("\n").encode()},
        {"a.csv": (HEADER + _rows(50) + "\n\n").encode()},
        {
            "a.csv": (HEADER.replace(",share_b\n", ",note\n") + _rows(5)).encode(),
            "b.csv": (HEADER + _row(9, "D1")).encode("cp932"),
        },
    ],
    ids=[
        "header only",
        "no rows at all",
        "crlf and bom",
        "no final newline",
        "blank lines",
        "files with different columns",
    ],
)
def test_edge_cases_stream_to_the_reference_outputs(
    files: dict[str, bytes], tmp_path: Path
) -> None:
    _export(tmp_path / "raw", files)
    _assert_same_as_reference(tmp_path / "raw", tmp_path)


def test_an_error_while_writing_an_output_stops_the_cleansing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(streaming, "BATCH_BYTES", 16 << 10)
    generate(tmp_path / "raw", respondents=500, seed=5)

    class Full(MemorySink):
        def write(self, name: str, table: pa.Table) -> None:
            if sum(t.num_rows for t in self.tables[name]) > 100:
                raise OSError("No space left on device")
            super().write(name, table)

    (tmp_path / "spill").mkdir()
    with pytest.raises(OSError, match="No space left"):
        cleanse_stream(
            ExportStream(tmp_path / "raw"), CleanseRules(), KEY, Full(), tmp_path / "spill"
        )


def test_spilled_keys_cut_short_stop_the_cleansing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the eligible rows' keys wait on disk between the passes: read back short, they would
    # shift every row after the gap onto another row's key
    monkeypatch.setattr(streaming, "BATCH_BYTES", 16 << 10)
    generate(tmp_path / "raw", respondents=500, seed=5)
    append = spilling._KeyFiles.append
    batches: list[int] = []

    def one_row_short(self: spilling._KeyFiles, keys: dict) -> None:
        batches.append(1)
        if len(batches) == 2:
            keys = {**keys, "submitted": keys["submitted"][:-1]}
        append(self, keys)

    monkeypatch.setattr(spilling._KeyFiles, "append", one_row_short)
    with pytest.raises(OSError, match=r"spilled keys .*submitted are incomplete"):
        _streamed(tmp_path / "raw", tmp_path)


def _parquet_outputs(raw: Path, out: Path, workers: int) -> tuple[dict, dict[str, bytes]]:
    spill = out / "spill"
    spill.mkdir(parents=True)
    layout = Layout(str(out / "work"), "2026-11-22")
    with ExitStack() as stack:
        sink = ParquetOutputs(layout, stack)
        summary = cleanse_stream(ExportStream(raw), CleanseRules(), KEY, sink, spill, workers)
        sink.close()
    files = {
        str(p.relative_to(out / "work")): p.read_bytes()
        for p in sorted((out / "work").rglob("*.parquet"))
    }
    return summary, files


def test_the_number_of_workers_changes_no_byte_of_the_outputs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # batches are judged and split on a pool, but spilled and written in the order read
    monkeypatch.setattr(streaming, "BATCH_BYTES", 16 << 10)
    generate(tmp_path / "raw", respondents=1500, seed=3)
    summary, files = _parquet_outputs(tmp_path / "raw", tmp_path / "one", workers=1)
    assert len(files) == len(summary["cohorts"]) + 1
    for workers in (2, 3, 8):
        assert _parquet_outputs(tmp_path / "raw", tmp_path / f"w{workers}", workers) == (
            summary,
            files,
        )


@pytest.mark.parametrize("workers", [1, 3])
def test_batches_in_flight_are_bounded_by_the_workers(
    workers: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a batch is read, judged, then spilled; no more than ``workers`` are between the
    # first and the last (memory: that many batches, whatever the export's size); pass 2
    # splits no more than ``workers`` spilled batches at once
    monkeypatch.setattr(streaming, "BATCH_BYTES", 16 << 10)
    generate(tmp_path / "raw", respondents=1500, seed=3)
    lock = threading.Lock()
    seen = {"judging": 0, "unspilled": 0, "emitting": 0}
    peak = dict.fromkeys(seen, 0)

    full = {"judging": threading.Event(), "emitting": threading.Event()}

    def count(name: str, step: int) -> None:
        with lock:
            seen[name] += step
            peak[name] = max(peak[name], seen[name])
            if name in full and seen[name] == workers:
                full[name].set()

    judge, add, emit = spilling._judge, spilling._File.add, spilling._emit

    def slow_judge(*args: object) -> object:
        count("unspilled", 1)
        count("judging", 1)
        full["judging"].wait(timeout=10)  # until the pool is full once: it fills
        try:
            return judge(*args)  # type: ignore[arg-type]
        finally:
            count("judging", -1)

    def spilled(self: spilling._File, judged: object) -> None:
        count("unspilled", -1)
        add(self, judged)  # type: ignore[arg-type]

    def slow_emit(*args: object) -> object:
        count("emitting", 1)
        full["emitting"].wait(timeout=10)
        try:
            return emit(*args)  # type: ignore[arg-type]
        finally:
            count("emitting", -1)

    monkeypatch.setattr(spilling, "_judge", slow_judge)
    monkeypatch.setattr(spilling._File, "add", spilled)
    monkeypatch.setattr(spilling, "_emit", slow_emit)
    spill = tmp_path / "spill"
    spill.mkdir()
    sink = MemorySink()
    cleanse_stream(ExportStream(tmp_path / "raw"), CleanseRules(), KEY, sink, spill, workers)
    assert peak == {"judging": workers, "unspilled": workers, "emitting": workers}
    assert seen == dict.fromkeys(seen, 0)


def test_an_error_judging_a_batch_stops_the_cleansing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(streaming, "BATCH_BYTES", 16 << 10)
    generate(tmp_path / "raw", respondents=500, seed=5)
    judge = spilling._judge
    calls: list[int] = []

    def failing(*args: object) -> object:
        calls.append(1)
        if len(calls) == 3:
            raise MemoryError("a batch too many")
        return judge(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(spilling, "_judge", failing)
    (tmp_path / "spill").mkdir()
    with pytest.raises(MemoryError, match="a batch too many"):
        cleanse_stream(
            ExportStream(tmp_path / "raw"), CleanseRules(), KEY, MemorySink(), tmp_path / "spill", 2
        )


def test_no_workers_is_a_configuration_error(tmp_path: Path) -> None:
    generate(tmp_path / "raw", respondents=50, seed=5)
    with pytest.raises(ConfigError, match="at least one worker"):
        cleanse_stream(
            ExportStream(tmp_path / "raw"), CleanseRules(), KEY, MemorySink(), tmp_path, 0
        )
