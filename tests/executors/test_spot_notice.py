"""On EC2 Spot the wrapper watches the instance metadata for the two-minute notice and
saves the program's checkpoint when it comes. The metadata service is played on loopback
(``PIPELINE_IMDS_ENDPOINT``): IMDSv2's token, then 404 until the notice is served."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from pipeline.core.job import CAPACITY_ENV, CHECKPOINT_POINTER, JobDocument
from pipeline.core.spec import spec_from_dict
from pipeline.wrapper import IMDS_ENV, IMDS_POLL_ENV
from tests.conftest import REPO

NOTICE = {"action": "terminate", "time": "2026-11-22T18:02:00Z"}
PROGRAM = """
import os, pathlib, sys, time
out, ck = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
for step in range(1, 40):
    time.sleep(0.1)
    (ck / ".progress").write_text(str(step))
    os.replace(ck / ".progress", ck / "progress")
(out / "estimates.csv").write_text("treatment,estimate,ci_low,ci_high\\na,1,0.5,2\\n")
"""


class Metadata:
    """IMDSv2 on loopback: a token for PUT /latest/api/token; spot/instance-action is 404
    until ``notice_after`` seconds, then the notice (with the token only)."""

    def __init__(self, notice_after: float) -> None:
        self.start, self.notice_after = time.monotonic(), notice_after
        self.requests: list[str] = []
        metadata = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:
                pass

            def do_PUT(self) -> None:
                metadata.requests.append(f"PUT {self.path}")
                ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")
                self._answer(200 if self.path == "/latest/api/token" and ttl else 400, b"tok")

            def do_GET(self) -> None:
                metadata.requests.append(f"GET {self.path}")
                if self.headers.get("X-aws-ec2-metadata-token") != "tok":
                    self._answer(401, b"")
                elif self.path != "/latest/meta-data/spot/instance-action" or (
                    time.monotonic() - metadata.start < metadata.notice_after
                ):
                    self._answer(404, b"")
                else:
                    self._answer(200, json.dumps(NOTICE).encode())

            def _answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_spot_notice_from_the_instance_metadata_saves_the_checkpoint(tmp_path: Path) -> None:
    program = tmp_path / "program.py"
    program.write_text(PROGRAM)
    (tmp_path / "input.csv").write_text("response_id\nr1\n")
    (tmp_path / "frame.csv").write_text("specialty\nim\n")
    spec = spec_from_dict(
        {"name": "steps", "version": "1.0", "command": ["python", str(program),
         "{output_dir}", "{checkpoint_dir}"], "outputs": {"results": "estimates.csv"},
         "checkpoint_dir": "ckpt", "checkpoint_interval": "1h", "timeout": 60}
    )  # fmt: skip
    store = tmp_path / "store"
    document = JobDocument(
        spec=spec, run_date="2026-11-22", cohort="asthma", attempt="a1",
        input=str(tmp_path / "input.csv"), frame=str(tmp_path / "frame.csv"),
        output=str(tmp_path / "out"), checkpoint=str(store),
    )  # fmt: skip
    job = tmp_path / "job.json"
    job.write_text(json.dumps(document.to_dict()))
    metadata = Metadata(notice_after=1.5)
    try:
        env = {"PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin",
               "PYTHONPATH": str(REPO), CAPACITY_ENV: "spot", IMDS_ENV: metadata.url,
               IMDS_POLL_ENV: "0.2"}  # fmt: skip
        done = subprocess.run([sys.executable, "-m", "pipeline.wrapper", "--job", str(job)],
                              cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=60)  # fmt: skip
    finally:
        metadata.close()
    assert done.returncode == 0, done.stderr  # the notice does not stop the program
    assert "Spot interruption notice from the instance metadata" in done.stderr
    assert "saved (Spot notice)" in done.stderr
    pointer = json.loads((store / CHECKPOINT_POINTER).read_text())
    assert pointer["why"] == "Spot notice" and pointer["capacity"] == "spot"
    saved = int((store / "generations" / pointer["generation"] / "progress").read_text())
    assert 5 <= saved < 39  # saved at the notice, while the program ran on
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["capacity"] == "spot"
    assert manifest["interruption"].startswith("spot/instance-action: ")
    assert "ckpt/progress" not in manifest["outputs"]
    assert metadata.requests[0] == "PUT /latest/api/token"


def test_no_instance_metadata_ends_the_watch_quietly(tmp_path: Path) -> None:
    """Fargate Spot has no instance metadata: one log line, and the run goes on."""
    from pipeline.wrapper import SpotNotice

    seen: list[str] = []
    watch = SpotNotice("http://127.0.0.1:9", 0.1, seen.append)  # nothing listens there
    watch.start()
    watch.stop()
    assert seen == [] and watch.notice == ""
