"""Targets under an ``s3://`` storage root (luigi's S3Target on the moto server)."""

from __future__ import annotations

import luigi
import pandas as pd
import pytest

from pipeline import storage
from tests.cloud.conftest import Cloud


def test_reads_writes_lists_and_removes(cloud: Cloud) -> None:
    root = f"{cloud.root}/2026-11-22"
    frame = pd.DataFrame({"cohort": ["asthma"], "n": [3]})
    storage.write_parquet(storage.join(root, "cleanse", "cohorts", "asthma.parquet"), frame)
    storage.write_json(storage.join(root, "cleanse", "summary.json"), {"rows": 3})
    storage.write_bytes(storage.join(root, "cleanse", "frame.csv"), "地域\n関東\n".encode())
    assert storage.read_parquet(storage.join(root, "cleanse", "cohorts", "asthma.parquet")).equals(
        frame
    )
    assert storage.read_json(storage.join(root, "cleanse", "summary.json")) == {"rows": 3}
    assert storage.read_bytes(storage.join(root, "cleanse", "frame.csv")).decode() == "地域\n関東\n"
    assert storage.exists(storage.join(root, "cleanse"))  # a "directory" exists by its keys
    assert storage.listdir(storage.join(root, "cleanse")) == [
        f"{root}/cleanse/cohorts/asthma.parquet",
        f"{root}/cleanse/frame.csv",
        f"{root}/cleanse/summary.json",
    ]
    assert isinstance(storage.target(f"{root}/x"), luigi.contrib.s3.S3Target)
    storage.remove(storage.join(root, "cleanse"))
    assert storage.listdir(storage.join(root, "cleanse")) == []
    assert not storage.exists(storage.join(root, "cleanse", "summary.json"))
    assert storage.listdir(storage.join(root, "nothing")) == []


def test_a_failed_write_leaves_nothing(cloud: Cloud) -> None:
    uri = f"{cloud.root}/2026-11-22/model/asthma/results.parquet"
    with pytest.raises(RuntimeError), storage.target(uri).open("w") as fh:
        fh.write(b"half a file")
        raise RuntimeError("killed mid-write")
    assert not storage.exists(uri)
    storage.write_bytes(uri, b"whole")
    with pytest.raises(RuntimeError), storage.target(uri).open("w") as fh:
        fh.write(b"new half")
        raise RuntimeError("killed mid-write")
    assert storage.read_bytes(uri) == b"whole"  # the old complete file is untouched


def test_a_missing_object_is_file_not_found_as_for_a_local_root(cloud: Cloud) -> None:
    """Callers tell "not there" from a failure by FileNotFoundError whatever the root: a
    finished cloud attempt whose run.json was never written (its orchestrator was killed)
    is adopted only if reading that run.json says so (found by tests/rehearsal)."""
    from pipeline.executors import attempts

    missing = f"{cloud.root}/2026-11-22/model/asthma/toy/attempts/x/run.json"
    with pytest.raises(FileNotFoundError, match=r"attempts/x/run\.json"):
        storage.read_bytes(missing)
    with pytest.raises(FileNotFoundError):
        storage.read_json(missing)
    assert attempts._read_json(missing) is None


def requests_made(client: object) -> list[str]:
    """Every S3 request ``client`` (luigi's S3Client) sends from now on, by operation."""
    made: list[str] = []
    client.s3.meta.client.meta.events.register(  # type: ignore[attr-defined]
        "before-call.s3", lambda model, **_: made.append(model.name)
    )
    return made


def test_each_call_is_as_few_requests_as_it_can_be(cloud: Cloud) -> None:
    uri = f"{cloud.root}/2026-11-23/quality/asthma.json"
    made = requests_made(storage.s3_client())
    storage.write_json(uri, {"ok": True})
    assert made == ["PutObject"]  # not a temp file and a managed transfer
    made.clear()
    assert storage.read_json(uri) == {"ok": True}
    assert made == ["GetObject"]  # no HEAD first
    made.clear()
    storage.remove(uri)
    assert made == ["DeleteObject", "ListObjectsV2"]  # the file, then anything below it
    made.clear()
    assert not storage.exists(uri)
    assert made == ["HeadObject", "ListObjectsV2"]  # no directory-marker GETs


def test_a_target_written_goes_up_in_one_put_and_a_large_one_in_parts(
    cloud: Cloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cleansing writes its outputs through targets: one PutObject each, not a transfer
    manager per file; above ``SINGLE_PUT_BYTES`` luigi's multi-part upload."""
    from s3transfer.manager import TransferManager

    def no_manager(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("a transfer manager (and its thread pool) for a small file")

    uri = f"{cloud.root}/2026-11-23/cleanse/cohorts/asthma.parquet"
    made = requests_made(storage.s3_client())
    with monkeypatch.context() as patched:
        patched.setattr(TransferManager, "__init__", no_manager)
        with storage.target(uri).open("w") as fh:
            fh.write(b"a cohort's rows")
    assert made == ["PutObject"]
    assert storage.read_bytes(uri) == b"a cohort's rows"
    monkeypatch.setattr(storage, "SINGLE_PUT_BYTES", 1024**2)
    large = bytes(range(256)) * (9 * 4096)  # 9 MiB: above boto3's multi-part threshold
    made.clear()
    with storage.target(uri).open("w") as fh:
        fh.write(large)
    assert made[0] == "CreateMultipartUpload" and made[-1] == "CompleteMultipartUpload"
    assert storage.read_bytes(uri) == large


def test_scheduling_answers_from_one_listing(cloud: Cloud) -> None:
    """Inside ``listed(dir)``, whether a target below it exists costs no request; what is
    written inside the block is not seen there (it is for scheduling, before runs)."""
    base = f"{cloud.root}/2026-11-24"
    done = [f"{base}/quality/c{i}.parquet" for i in range(3)]
    for uri in done:
        storage.write_bytes(uri, b"x")
    made = requests_made(storage.s3_client())
    with storage.listed(base):
        listing = list(made)
        assert [storage.target(u).exists() for u in done] == [True, True, True]
        assert not storage.target(f"{base}/quality/c9.parquet").exists()
        assert made == listing  # answered from the listing
        storage.write_bytes(f"{base}/quality/c9.parquet", b"x")
        assert not storage.target(f"{base}/quality/c9.parquet").exists()
        assert storage.target(f"{cloud.root}/elsewhere.json").exists() is False  # HEAD
    assert listing == ["ListObjectsV2"]
    assert made[-2:] == ["PutObject", "HeadObject"]
    assert storage.target(f"{base}/quality/c9.parquet").exists()  # after it: HEAD again


def test_files_and_directories_below_a_listing_are_answered_from_it(cloud: Cloud) -> None:
    """Inside ``listed(dir)`` (``pipeline status``), ``exists`` of a file or a "directory"
    and ``listdir`` below it cost no request, and answer as they do outside it."""
    base = f"{cloud.root}/2026-11-25"
    files = [f"{base}/model/a/v/attempts/1/run.json", f"{base}/model/a/v/attempts/1/out/x.csv",
             f"{base}/model/ab/v/run.json", f"{base}/logs/tasks/t.json"]  # fmt: skip
    for uri in files:
        storage.write_bytes(uri, b"x")
    asked = [f"{base}/model/a/v/attempts", f"{base}/model/a", f"{base}/model/a/v/run.json",
             f"{base}/model/ab/v/run.json", f"{base}/logs/tasks/", f"{base}/nothing"]  # fmt: skip
    outside = [(storage.exists(u), storage.listdir(u)) for u in asked]
    made = requests_made(storage.s3_client())
    with storage.listed(base):
        inside = [(storage.exists(u), storage.listdir(u)) for u in asked]
    assert made == ["ListObjectsV2"]
    assert inside == outside
    # model/ab is not below model/a: a prefix of a name is no directory
    assert inside[1] == (True, sorted(files[:2]))


def test_appended_lines_within_the_upload_time_go_up_together(cloud: Cloud, tmp_path) -> None:
    import time

    log = f"{cloud.root}/2026-11-25/logs/tasks/RunModel_x.log"
    made = requests_made(storage.s3_client())
    for line in ("prepared\n", "submitted\n", "RUNNING\n"):
        storage.append_text(log, line, tmp_path, upload_within=60)
    assert "PutObject" not in made  # pending
    storage.flush_appended(log)
    assert made.count("PutObject") == 1
    assert storage.read_bytes(log) == b"prepared\nsubmitted\nRUNNING\n"
    # Without a flush, the pending lines go up once their time is over.
    storage.append_text(log, "done\n", tmp_path, upload_within=0.2)
    deadline = time.monotonic() + 10
    while storage.read_bytes(log).count(b"\n") < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert storage.read_bytes(log).endswith(b"RUNNING\ndone\n")


def test_a_record_written_again_within_its_time_goes_up_once_the_last(cloud: Cloud) -> None:
    """A task's timing record: "running" pending, then its outcome written now, is one
    PUT of the outcome; a pending record alone goes up when its time is over."""
    import time

    record = f"{cloud.root}/2026-11-25/logs/tasks/CheckData_x.json"
    made = requests_made(storage.s3_client())
    storage.write_within(record, b'{"status": "running"}', 60)
    assert made == []  # pending
    storage.write_within(record, b'{"status": "succeeded"}', 0)
    assert made == ["PutObject"]
    storage.flush_appended()
    assert made == ["PutObject"]  # the pending "running" went with it, not after it
    assert storage.read_bytes(record) == b'{"status": "succeeded"}'
    made.clear()
    storage.write_within(record, b'{"status": "running"}', 0.2)
    storage.write_within(record, b'{"status": "running", "pid": 1}', 0.2)  # the last wins
    deadline = time.monotonic() + 10
    while not made and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    assert made == ["PutObject"]
    assert storage.read_bytes(record) == b'{"status": "running", "pid": 1}'


def test_every_cohorts_check_reads_the_cleansing_once(cloud: Cloud) -> None:
    """The summary, rejections and frame every CheckData reads are read once per cleansing
    (a HEAD request each time after), and again once cleansing wrote them anew."""
    from pipeline.layout import Layout
    from pipeline.tasks.quality import cleansed_outputs

    layout = Layout(cloud.root, "2026-11-26")
    rejections = pd.DataFrame({"cohort": ["a", "a", "b"], "reasons": ["speeder"] * 3})
    storage.write_parquet(layout.rejections(), rejections)
    storage.write_bytes(layout.frame(), b"specialty,region,n_physicians\nx,y,1\n")
    storage.write_json(layout.cleanse_summary(), {"run": 1})
    made = requests_made(storage.s3_client())
    summary, by_cohort, _frame = cleansed_outputs(layout)
    assert summary == {"run": 1} and sorted(by_cohort) == ["a", "b"]
    assert len(by_cohort["a"]) == 2
    made.clear()
    assert cleansed_outputs(layout)[0] == {"run": 1}
    assert made == ["HeadObject"]
    storage.write_json(layout.cleanse_summary(), {"run": 2})  # cleansing ran again
    assert cleansed_outputs(layout)[0] == {"run": 2}


def test_a_log_this_process_started_is_known_as_such(cloud: Cloud, tmp_path) -> None:
    """A task whose log this run started had no failure before (a failure is written with
    a line in that log): its success needs no DELETE of a failure file."""
    new, old = (f"{cloud.root}/2026-11-27/logs/tasks/{n}.log" for n in ("New", "Old"))
    storage.write_bytes(old, b"an earlier run\n")
    storage.append_text(new, "first\n", tmp_path / "a")
    storage.append_text(old, "again\n", tmp_path / "a")
    assert storage.started_here(new) and not storage.started_here(new)  # asked once
    assert not storage.started_here(old)
    assert storage.read_bytes(old) == b"an earlier run\nagain\n"


def _deliver(root: str, date: str, rows: int, cohort: str = "asthma") -> dict:
    """What CheckData records for a delivery that passed: its figures, with the history it
    was compared with."""
    from pipeline.layout import Layout
    from pipeline.tasks.quality import recent_figures, record_figures

    layout = Layout(root, date)
    figures = {"rows": rows, "rejected": 1, "rejection_rate": 1 / (rows + 1)}
    record_figures(layout, cohort, figures, recent_figures(layout, cohort, 5))
    return {"run_date": date, **figures}


def _read_each(root: str, dates: list[str], cohort: str = "asthma") -> list[dict]:
    """The history as each delivery's own record has it (one GET a delivery)."""
    from pipeline.layout import Layout

    records = []
    for date in dates:
        record = storage.read_json(Layout(root, date).quality_figures(cohort))
        records.append({k: v for k, v in record.items() if k != "recent"})
    return records


def _without_versions(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "version"} for r in records]


def test_a_cohorts_quality_history_is_one_list_and_one_get(cloud: Cloud) -> None:
    """Every delivery's data check compares with the cohort's last five: read from the
    newest record, which carries the ones before it, not one GET each; a date run again
    since (another version of its record) is read itself."""
    from pipeline.layout import Layout
    from pipeline.tasks.quality import recent_figures

    dates = [f"2026-0{m}-01" for m in range(1, 8)]
    written = [_deliver(cloud.root, date, 100 + i) for i, date in enumerate(dates[:6])]
    made = requests_made(storage.s3_client())
    history = recent_figures(Layout(cloud.root, dates[6]), "asthma", 5)
    assert made == ["ListObjectsV2", "GetObject"]
    assert _without_versions(history) == written[1:][::-1]
    assert _without_versions(history) == _read_each(cloud.root, dates[1:6][::-1])

    # 2026-04-01 is run again (other figures) after the records that carry it were written
    rerun = _deliver(cloud.root, dates[3], 999)
    made.clear()
    history = recent_figures(Layout(cloud.root, dates[6]), "asthma", 5)
    assert made == ["ListObjectsV2", "GetObject", "GetObject"]  # the newest, then the rerun
    assert _without_versions(history)[2] == rerun
    assert _without_versions(history) == _read_each(cloud.root, dates[1:6][::-1])


def test_records_that_carry_no_history_are_read_each(cloud: Cloud) -> None:
    """Records written before they carried their history are read one by one, as before."""
    from pipeline.layout import Layout
    from pipeline.tasks.quality import recent_figures

    dates = ["2026-01-01", "2026-02-01", "2026-03-01"]
    for i, date in enumerate(dates[:2]):
        layout = Layout(cloud.root, date)
        storage.write_json(layout.quality_figures("copd"), {"run_date": date, "rows": i})
    made = requests_made(storage.s3_client())
    history = recent_figures(Layout(cloud.root, dates[2]), "copd", 5)
    assert made == ["ListObjectsV2", "GetObject", "GetObject"]
    assert _without_versions(history) == [
        {"run_date": "2026-02-01", "rows": 1},
        {"run_date": "2026-01-01", "rows": 0},
    ]
