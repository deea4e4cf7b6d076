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
    assert made == ["DeleteObject", "ListObjects"]  # the file, then anything below it
    made.clear()
    assert not storage.exists(uri)
    assert made == ["HeadObject", "ListObjectsV2"]  # no directory-marker GETs


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
    assert listing == ["ListObjects"]
    assert made[-2:] == ["PutObject", "HeadObject"]
    assert storage.target(f"{base}/quality/c9.parquet").exists()  # after it: HEAD again
