"""The wrapper, run for real as a subprocess around small programs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from pipeline.wrapper import running_image

PROGRAM = """
import os, pathlib, signal, sys, time
mode, out = sys.argv[1], pathlib.Path(sys.argv[2])
pathlib.Path(sys.argv[3]).write_text(str(os.getpid()))
if mode == "ok":
    (out / "estimates.csv").write_text("treatment,estimate,ci_low,ci_high\\na,1,0,2\\n")
    print("done", flush=True)
elif mode == "fail":
    print("something broke: column 'n_patients' missing", file=sys.stderr, flush=True)
    sys.exit(3)
elif mode == "hang":
    time.sleep(600)
elif mode == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    while True:
        time.sleep(0.1)
"""


def make_job(tmp_path: Path, mode: str, *, timeout: float = 30, grace: float = 1) -> Path:
    program = tmp_path / "prog.py"
    program.write_text(PROGRAM)
    (tmp_path / "input.parquet").write_bytes(b"input-bytes")
    (tmp_path / "frame.csv").write_text("specialty\n")
    job = {
        "spec": {
            "name": "prog",
            "version": "0.1",
            "command": [
                sys.executable,
                str(program),
                mode,
                "{output_dir}",
                str(tmp_path / "pid"),
            ],
            "outputs": {"results": "estimates.csv"},
            "timeout": timeout,
        },
        "run_date": "2026-11-22",
        "cohort": "c1",
        "input": str(tmp_path / "input.parquet"),
        "frame": str(tmp_path / "frame.csv"),
        "output": str(tmp_path / "out"),
        "grace_seconds": grace,
    }
    path = tmp_path / "job.json"
    path.write_text(json.dumps(job))
    return path


def start(job: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.wrapper", "--job", str(job)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def program_pid(tmp_path: Path) -> int:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        pid_file = tmp_path / "pid"
        if pid_file.exists() and pid_file.read_text():
            return int(pid_file.read_text())
        time.sleep(0.05)
    raise AssertionError("the program never started")


def assert_gone(pid: int) -> None:
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_success_writes_results_and_manifest(tmp_path: Path) -> None:
    proc = start(make_job(tmp_path, "ok"))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "done" in out
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["exit_code"] == 0
    assert manifest["program"] == {"name": "prog", "version": "0.1", "image": ""}
    assert set(manifest["outputs"]) == {"estimates.csv"}
    assert len(manifest["inputs"][str(tmp_path / "input.parquet")]) == 64
    assert manifest["started_at"] <= manifest["finished_at"]
    assert manifest["terminated_by"] is None


def test_failure_exits_with_the_program_code(tmp_path: Path) -> None:
    proc = start(make_job(tmp_path, "fail"))
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 3
    assert "column 'n_patients' missing" in err
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["exit_code"] == 3


def test_deadline_is_enforced_inside(tmp_path: Path) -> None:
    proc = start(make_job(tmp_path, "hang", timeout=1.5))
    pid = program_pid(tmp_path)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 124
    assert "deadline of 1.5s passed" in err
    assert_gone(pid)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["terminated_by"].startswith("deadline")


def test_program_that_ignores_sigterm_is_killed(tmp_path: Path) -> None:
    proc = start(make_job(tmp_path, "stubborn", timeout=1, grace=1))
    pid = program_pid(tmp_path)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 124
    assert "ignored SIGTERM: sending SIGKILL" in err
    assert_gone(pid)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_termination_is_forwarded(tmp_path: Path, sig: signal.Signals) -> None:
    proc = start(make_job(tmp_path, "hang"))
    pid = program_pid(tmp_path)
    proc.send_signal(sig)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM
    assert f"received {sig.name}" in err
    assert_gone(pid)


def test_program_not_found(tmp_path: Path) -> None:
    job = make_job(tmp_path, "ok")
    data = json.loads(job.read_text())
    data["spec"]["command"] = ["/nonexistent/program", "{input}"]
    job.write_text(json.dumps(data))
    proc = start(job)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 127
    assert "cannot start the program" in err


def test_stops_the_program_when_its_parent_dies(tmp_path: Path) -> None:
    job = make_job(tmp_path, "hang")
    # A parent shell that starts the wrapper in the background and is then SIGKILLed.
    parent = subprocess.Popen(
        [
            "sh",
            "-c",
            f"{sys.executable} -m pipeline.wrapper --job {job} --stop-with-parent $$ "
            f"2>{tmp_path / 'err'} & wait",
        ],
    )
    pid = program_pid(tmp_path)
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 20
    while psutil.pid_exists(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert_gone(pid)
    assert "the worker that started this run is gone" in (tmp_path / "err").read_text()


def test_a_parent_gone_before_the_wrapper_looked_counts_too(tmp_path: Path) -> None:
    # The worker may be killed between starting the wrapper and the wrapper's first look
    # at its parent: the wrapper then already belongs to another parent. It is told the
    # worker's pid, so it stops the program all the same (here: a pid that is not its
    # parent, as after such a kill).
    job = make_job(tmp_path, "hang")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline.wrapper", "--job", str(job),
         "--stop-with-parent", str(os.getppid())],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    pid = program_pid(tmp_path)
    _out, err = proc.communicate(timeout=30)
    assert_gone(pid)
    assert "the worker that started this run is gone" in err


DIGEST = "sha256:" + "5e" * 32


def test_inside_ecs_the_manifest_records_the_image_that_ran(
    tmp_path: Path, httpserver: HTTPServer
) -> None:
    """$ECS_CONTAINER_METADATA_URI_V4 answers like the task metadata endpoint v4."""
    image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/estimator:abc1234"
    httpserver.expect_request("/v4/7f3c-container").respond_with_json(
        {"DockerId": "7f3c", "Name": "estimator", "Image": image, "ImageID": DIGEST,
         "Labels": {}, "DesiredStatus": "RUNNING", "KnownStatus": "RUNNING"}
    )  # fmt: skip
    job = make_job(tmp_path, "ok")
    env = {**os.environ, "ECS_CONTAINER_METADATA_URI_V4": httpserver.url_for("/v4/7f3c-container")}
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.wrapper", "--job", str(job)],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert (manifest["image"], manifest["image_digest"]) == (image, DIGEST)
    assert manifest["program"]["image"] == ""  # what the spec asked for: nothing
    httpserver.check_assertions()


def test_outside_ecs_the_image_is_left_empty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ECS_CONTAINER_METADATA_URI_V4", raising=False)
    assert running_image() == ("", "")
    job = make_job(tmp_path, "ok")
    assert subprocess.run(
        [sys.executable, "-m", "pipeline.wrapper", "--job", str(job)],
        capture_output=True, timeout=60, env={**os.environ},
    ).returncode == 0  # fmt: skip
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert (manifest["image"], manifest["image_digest"]) == ("", "")


def test_a_slow_or_broken_metadata_endpoint_does_not_hold_the_run(
    httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    def slow(_request: Request) -> Response:
        time.sleep(1.5)
        return Response(json.dumps({"Image": "late", "ImageID": DIGEST}))

    httpserver.expect_request("/slow").respond_with_handler(slow)
    httpserver.expect_request("/broken").respond_with_data("not json")
    monkeypatch.setenv("ECS_CONTAINER_METADATA_URI_V4", httpserver.url_for("/slow"))
    started = time.monotonic()
    assert running_image(timeout=0.3) == ("", "")
    assert time.monotonic() - started < 1.2
    monkeypatch.setenv("ECS_CONTAINER_METADATA_URI_V4", httpserver.url_for("/broken"))
    assert running_image() == ("", "")


def test_the_program_does_not_see_the_wrappers_own_packages(tmp_path: Path) -> None:
    """docker/wrap-program.Dockerfile puts the wrapper's packages on PYTHONPATH; the
    program starts without that entry (and keeps the rest)."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import os, pathlib, sys\n"
        "pathlib.Path(sys.argv[1], 'env.csv').write_text(\n"
        "    os.environ.get('PYTHONPATH', '<unset>') + '|' + "
        "os.environ.get('PIPELINE_WRAPPER_PATH', '<unset>'))\n"
    )
    job = make_job(tmp_path, "ok")
    document = json.loads(job.read_text())
    document["spec"]["command"] = [sys.executable, str(probe), "{output_dir}"]
    document["spec"]["outputs"] = {"results": "env.csv"}
    job.write_text(json.dumps(document))
    wrapper_packages = str(tmp_path / "wrapper-packages")
    env = {**os.environ, "PIPELINE_WRAPPER_PATH": wrapper_packages,
           "PYTHONPATH": os.pathsep.join([wrapper_packages, "/team/lib"])}  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.wrapper", "--job", str(job)],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / "env.csv").read_text() == "/team/lib|<unset>"
