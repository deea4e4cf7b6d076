"""The wrapper as the container runs it: a subprocess whose job, inputs and outputs are
all on (moto) S3, around small programs that succeed, fail, hang and ignore SIGTERM."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from pipeline import storage
from tests.cloud.conftest import BUCKET, TOY_PROGRAM, Cloud, container_env
from tests.conftest import REPO

PREFIX = f"s3://{BUCKET}/work/2026-11-22"


def put_job(cloud: Cloud, tmp_path: Path, mode: str, *, timeout: float = 60,
            grace: float = 1, frame_name: str = "frame.csv") -> str:  # fmt: skip
    program = tmp_path / "toy.py"
    program.write_text(TOY_PROGRAM)
    rows = pd.DataFrame({"response_id": ["r1", "r2"], "share_a": [60.0, 40.0],
                         "share_b": [40.0, 60.0]})  # fmt: skip
    storage.write_parquet(f"{PREFIX}/cleanse/cohorts/asthma.parquet", rows)
    storage.write_bytes(f"{PREFIX}/cleanse/{frame_name}", b"specialty,region\nim,kanto\n")
    job = {
        "spec": {"name": "toy", "version": "1.0", "image": "toy:1.0", "timeout": timeout,
                 "command": ["python", str(program), mode, "{input}", "{output_dir}"],
                 "outputs": {"results": "estimates.csv"}, "params": {"seed": 7}},
        "run_date": "2026-11-22", "cohort": "asthma",
        "input": f"{PREFIX}/cleanse/cohorts/asthma.parquet",
        "frame": f"{PREFIX}/cleanse/{frame_name}",
        "output": f"{PREFIX}/model/asthma/attempts/a1/out",
        "grace_seconds": grace,
    }  # fmt: skip
    uri = f"{PREFIX}/model/asthma/attempts/a1/job.json"
    storage.write_json(uri, job)
    return uri


def wrapper(cloud: Cloud, job_uri: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.wrapper", "--job", job_uri],
        cwd=REPO, env=container_env(cloud), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


def manifest(cloud: Cloud) -> dict:
    return storage.read_json(f"{PREFIX}/model/asthma/attempts/a1/out/manifest.json")


def test_success_uploads_outputs_and_manifest(cloud: Cloud, tmp_path: Path) -> None:
    proc = wrapper(cloud, put_job(cloud, tmp_path, "ok"))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "wrote 2 estimates" in out
    assert "downloaded input s3://" in err and "uploaded 2 files to s3://" in err
    results = storage.read_table(f"{PREFIX}/model/asthma/attempts/a1/out/estimates.csv")
    assert list(results["treatment"]) == ["a", "b"]
    m = manifest(cloud)
    assert m["exit_code"] == 0 and m["terminated_by"] is None
    assert m["program"] == {"name": "toy", "version": "1.0", "image": "toy:1.0"}
    assert m["params"] == {"seed": 7}
    data = storage.read_bytes(f"{PREFIX}/model/asthma/attempts/a1/out/estimates.csv")
    assert m["outputs"] == {"estimates.csv": hashlib.sha256(data).hexdigest()}
    source = storage.read_bytes(f"{PREFIX}/cleanse/cohorts/asthma.parquet")
    assert (
        m["inputs"][f"{PREFIX}/cleanse/cohorts/asthma.parquet"]
        == hashlib.sha256(source).hexdigest()
    )
    assert m["started_at"] <= m["finished_at"] and m["host"]


def test_failure_exits_with_the_program_code_and_still_uploads(
    cloud: Cloud, tmp_path: Path
) -> None:
    proc = wrapper(cloud, put_job(cloud, tmp_path, "fail"))
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 3
    assert "column 'n_patients' is empty" in err
    assert manifest(cloud)["exit_code"] == 3


@pytest.mark.parametrize("mode", ["hang", "stubborn"])
def test_deadline_is_enforced_inside_the_container(cloud: Cloud, tmp_path: Path, mode: str) -> None:
    proc = wrapper(cloud, put_job(cloud, tmp_path, mode, timeout=1.5, grace=1))
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 124, err
    assert "deadline of 1.5s passed" in err
    if mode == "stubborn":
        assert "program ignored SIGTERM: sending SIGKILL" in err
    assert manifest(cloud)["terminated_by"].startswith("deadline")


def test_sigterm_from_ecs_is_forwarded(cloud: Cloud, tmp_path: Path) -> None:
    proc = wrapper(cloud, put_job(cloud, tmp_path, "hang"))
    assert proc.stdout is not None
    for line in proc.stdout:  # wait until the program runs
        if "toy program: mode=hang" in line:
            break
    proc.terminate()
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143
    assert "received SIGTERM" in err
    assert manifest(cloud)["terminated_by"] == "received SIGTERM"


def test_missing_input_is_a_clear_error(cloud: Cloud, tmp_path: Path) -> None:
    job_uri = put_job(cloud, tmp_path, "ok")
    job = storage.read_json(job_uri)
    job["frame"] = f"{PREFIX}/cleanse/nope.csv"
    storage.write_json(job_uri, job)
    proc = wrapper(cloud, job_uri)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 3
    assert f"cannot download the frame {PREFIX}/cleanse/nope.csv: 404" in err
    assert "Traceback" not in err
    missing = wrapper(cloud, f"{PREFIX}/no-job.json")
    _out, err = missing.communicate(timeout=60)
    assert missing.returncode == 3 and "cannot read s3://" in err and "NoSuchKey" in err


def test_same_file_names_do_not_collide(cloud: Cloud, tmp_path: Path) -> None:
    # The input and the frame may share a file name in different folders.
    job_uri = put_job(cloud, tmp_path, "ok", frame_name="asthma.parquet")
    proc = wrapper(cloud, job_uri)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert len(json.loads(json.dumps(manifest(cloud)["inputs"]))) == 2
