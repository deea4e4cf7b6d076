"""The pipeline image's own scripts, run as the container runs them (a separate process):
the entrypoint that turns injected secrets into files, and fetch-raw against a real
moto S3 server on loopback."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import pytest

from tests.infra.tf import REPO

ENTRYPOINT = REPO / "docker" / "entrypoint.py"
FETCH_RAW = REPO / "docker" / "fetch_raw.py"
LUIGID_CFG = REPO / "docker" / "luigid.cloud.cfg"
SHOW_ENV = "import json, os; print(json.dumps(dict(os.environ)))"


def entrypoint(command: list[str], env: dict[str, str], tmp_path: Path):
    base = {k: v for k, v in os.environ.items() if not k.startswith(("GOOGLE_", "LUIGI"))}
    return subprocess.run(
        [sys.executable, str(ENTRYPOINT), *command],
        env={**base, "PIPELINE_SECRETS_DIR": str(tmp_path / "secrets"), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_gcp_key_becomes_a_private_file_and_leaves_the_environment(tmp_path):
    key = {
        "type": "service_account",
        "client_email": "pipeline@p.iam.gserviceaccount.com",
        "private_key": "not-a-real-key",
    }
    result = entrypoint(
        [sys.executable, "-c", SHOW_ENV],
        {"GOOGLE_APPLICATION_CREDENTIALS_JSON": json.dumps(key)},
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    env = json.loads(result.stdout)
    assert "GOOGLE_APPLICATION_CREDENTIALS_JSON" not in env
    path = Path(env["GOOGLE_APPLICATION_CREDENTIALS"])
    assert json.loads(path.read_text()) == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_a_broken_key_stops_the_container_with_a_clear_line_and_no_secret(tmp_path):
    result = entrypoint(
        ["true"], {"GOOGLE_APPLICATION_CREDENTIALS_JSON": "{not json s3cr3t"}, tmp_path
    )
    assert result.returncode == 2
    assert "GOOGLE_APPLICATION_CREDENTIALS_JSON is not JSON" in result.stderr
    assert "s3cr3t" not in result.stderr + result.stdout


def test_rds_secret_becomes_luigid_task_history(tmp_path):
    password = "p@ss:w/rd%25#?${HOME}"
    secret = {"username": "luigid", "password": password, "engine": "postgres"}
    probe = (
        "import json, luigi.configuration as c; cfg = c.get_config(); print(json.dumps({"
        "'url': cfg.get('task_history', 'db_connection'),"
        "'record': cfg.getboolean('scheduler', 'record_task_history'),"
        "'path': __import__('os').environ['LUIGI_CONFIG_PATH']}))"
    )
    pytest.importorskip("luigi", reason="reads the result with luigi's own config parser (.venv)")
    result = entrypoint(
        [sys.executable, "-c", probe],
        {
            "LUIGI_CONFIG_PATH": str(LUIGID_CFG),
            "LUIGID_DB_SECRET": json.dumps(secret),
            "LUIGID_DB_HOST": "survey-pipeline-luigid.abc.ap-northeast-1.rds.amazonaws.com",
            "LUIGID_DB_PORT": "5432",
            "LUIGID_DB_NAME": "luigid",
        },
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["record"] is True  # the baked override said false; the database turns it on
    url = urllib.parse.urlsplit(seen["url"])
    assert url.scheme == "postgresql+psycopg2"
    assert urllib.parse.unquote(url.password) == password
    assert url.hostname == "survey-pipeline-luigid.abc.ap-northeast-1.rds.amazonaws.com"
    assert (url.port, url.path, url.query) == (5432, "/luigid", "sslmode=require")
    written = Path(seen["path"])
    assert written.parent == tmp_path / "secrets"
    assert stat.S_IMODE(written.stat().st_mode) == 0o600


def test_without_a_database_luigid_keeps_history_off(tmp_path):
    result = entrypoint(
        [sys.executable, "-c", SHOW_ENV], {"LUIGI_CONFIG_PATH": str(LUIGID_CFG)}, tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["LUIGI_CONFIG_PATH"] == str(LUIGID_CFG)
    assert not (tmp_path / "secrets").exists()


def test_incomplete_database_settings_are_refused(tmp_path):
    result = entrypoint(
        ["true"], {"LUIGID_DB_SECRET": json.dumps({"username": "u", "password": "p"})}, tmp_path
    )
    assert result.returncode == 2
    assert "LUIGID_DB_HOST, LUIGID_DB_NAME" in result.stderr


def test_the_command_runs_in_place_of_the_entrypoint(tmp_path):
    result = entrypoint([sys.executable, "-c", "import os; print(os.getpid())"], {}, tmp_path)
    assert result.returncode == 0
    assert entrypoint([], {}, tmp_path).returncode == 2
    missing = entrypoint(["no-such-command-here"], {}, tmp_path)
    assert missing.returncode == 127 and "cannot run 'no-such-command-here'" in missing.stderr


# -- fetch-raw against a real moto S3 server ------------------------------------------


@pytest.fixture(scope="module")
def s3_endpoint():
    pytest.importorskip("boto3", reason="fetch-raw needs boto3 (.venv)")
    moto_server = Path(sys.executable).with_name("moto_server")
    if not moto_server.exists():
        pytest.skip("moto_server is not installed (the test extra)")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [str(moto_server), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    pytest.fail("moto_server did not start")
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def aws(s3_endpoint, monkeypatch):
    env = {
        "AWS_ENDPOINT_URL": s3_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    import boto3

    s3 = boto3.client("s3")
    bucket = f"work-{time.monotonic_ns()}"
    s3.create_bucket(Bucket=bucket)
    return s3, bucket, env


def fetch_raw(*args: str, env: dict[str, str]):
    return subprocess.run(
        [sys.executable, str(FETCH_RAW), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_fetch_raw_mirrors_the_export(aws, tmp_path):
    s3, bucket, env = aws
    s3.put_object(Bucket=bucket, Key="raw/cohorts.csv", Body=b"code,label\nasthma,Asthma\n")
    s3.put_object(Bucket=bucket, Key="raw/2026-11/responses.csv", Body=b"response_id\n1\n")
    s3.put_object(Bucket=bucket, Key="raw/2026-11/", Body=b"")  # a console "folder"
    s3.put_object(Bucket=bucket, Key="rawish/other.csv", Body=b"not ours")
    dest = tmp_path / "raw"
    (dest / "old").mkdir(parents=True)
    (dest / "old" / "stale.csv").write_text("from an earlier export")

    result = fetch_raw(f"s3://{bucket}/raw", str(dest), env=env)

    assert result.returncode == 0, result.stderr
    assert "2 file(s)" in result.stdout
    files = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert files == ["2026-11/responses.csv", "cohorts.csv"]
    assert (dest / "cohorts.csv").read_bytes() == b"code,label\nasthma,Asthma\n"
    assert not (dest / "old").exists()


def test_fetch_raw_refuses_an_empty_prefix_and_a_non_s3_uri(aws, tmp_path):
    _, bucket, env = aws
    empty = fetch_raw(f"s3://{bucket}/raw/", str(tmp_path / "raw"), env=env)
    assert empty.returncode == 2
    assert f"no objects under s3://{bucket}/raw/" in empty.stderr
    local = fetch_raw("/data/raw", str(tmp_path / "raw"), env=env)
    assert local.returncode == 2 and "is not an s3://BUCKET/PREFIX/ URI" in local.stderr
