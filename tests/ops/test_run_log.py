"""luigi's log of a `pipeline run` reaches an S3 storage root while the run goes
(`[run] log_upload_interval`), so an orchestrator killed mid-run leaves it behind."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import boto3
import psutil

from tests.cloud.conftest import REGION, aws_env, moto_server  # noqa: F401 - a fixture
from tests.conftest import REPO
from tests.ops.conftest import DATE, home_env, make_home, noop_spec, wait_for

BUCKET = "run-log-test"


def test_run_log_is_on_s3_when_the_run_is_sigkilled(moto_server: str, tmp_path: Path) -> None:  # noqa: F811
    request = urllib.request.Request(f"{moto_server}/moto-api/reset", data=b"{}", method="POST")
    urllib.request.urlopen(request, timeout=10).close()
    s3 = boto3.session.Session().client(
        "s3", region_name=REGION, endpoint_url=moto_server,
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )  # fmt: skip
    s3.create_bucket(Bucket=BUCKET)
    home = make_home(tmp_path / "home", cohorts=2)
    spec = noop_spec(tmp_path / "slow.toml", seconds=60)
    cfg = tmp_path / "override.cfg"
    cfg.write_text(f"[storage]\nroot = s3://{BUCKET}/work\n\n[run]\nlog_upload_interval = 1\n")
    env = {
        **os.environ,
        **home_env(home),
        **aws_env(moto_server),
        "LUIGI_CONFIG_PATH": str(cfg),
    }
    run = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "run", "--run-date", DATE, "--local-scheduler",
         "--program", str(spec)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    prefix = f"work/{DATE}/logs/runs/"
    spool = home / "logs" / "spool" / BUCKET / prefix
    killed: list[psutil.Process] = []
    try:
        # The programs run: luigi has logged the RunModel tasks' scheduling and start.
        assert wait_for(
            lambda: any("running   RunModel" in p.read_text() for p in spool.glob("*.log")),
            timeout=60,
        ), run.stdout.read() if run.poll() is not None else "no RunModel started"
        time.sleep(2.5)  # two upload ticks
        killed = psutil.Process(run.pid).children(recursive=True)
        os.killpg(run.pid, signal.SIGKILL)  # as the OOM killer or a stopped ECS task would
        run.wait(timeout=10)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(run.pid, signal.SIGKILL)
        for child in killed:  # the wrapper runs programs in their own process group
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
        run.wait(timeout=10)
    assert run.returncode == -signal.SIGKILL

    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])]
    assert len(keys) == 1, keys
    text = s3.get_object(Bucket=BUCKET, Key=keys[0])["Body"].read().decode()
    local = (spool / keys[0].removeprefix(prefix)).read_text()
    assert "Informed scheduler that task   RunModel" in text
    assert "running   RunModel" in text
    # The object is a whole upload of the file as it was (never half of one).
    assert local.startswith(text) and text.endswith("\n")
