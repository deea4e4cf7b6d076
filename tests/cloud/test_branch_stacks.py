"""The expiry job's view of branch stacks, against the moto server's S3: states listed by
key, each stack's branch read from its state's outputs, expired ones named, and a
destroyed stack's state forgotten (jenkins/branch_stacks.py, run as make runs it)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.cloud.conftest import BUCKET, REGION, Cloud, container_env
from tests.conftest import REPO

PREFIX = "survey-pipeline/branches"
SCRIPT = REPO / "jenkins" / "branch_stacks.py"


def state(branch: str) -> bytes:
    """What terraform writes for a branch stack, as far as the job reads it."""
    return json.dumps(
        {"version": 4, "outputs": {"branch": {"value": branch, "type": "string"},
                                   "stack_name": {"value": "x", "type": "string"}},
         "resources": []}
    ).encode()  # fmt: skip


def script(cloud: Cloud, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        env=container_env(cloud), capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def backend_file(tmp_path: Path) -> Path:
    path = tmp_path / "branch.backend.hcl"
    path.write_text(
        f'# test backend\nbucket       = "{BUCKET}"\nregion       = "{REGION}"\n'
        "encrypt      = true\nuse_lockfile = true\n"
    )
    return path


def name_of(cloud: Cloud, branch: str) -> str:
    return script(cloud, "name", branch).stdout.strip()


def test_expired_names_stacks_of_gone_branches_and_old_ones(cloud: Cloud, tmp_path: Path) -> None:
    branches = {"feature/live": "live", "feature/gone": "gone", "feature/old": "old"}
    names = {b: name_of(cloud, b) for b in branches}
    for branch, name in names.items():
        cloud.s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}/{name}/terraform.tfstate",
                            Body=state(branch))  # fmt: skip
    # Not branch stacks: never listed, whatever their age or outputs.
    cloud.s3.put_object(Bucket=BUCKET, Key="survey-pipeline/staging/terraform.tfstate",
                        Body=state(""))  # fmt: skip
    cloud.s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}/survey-pipeline/terraform.tfstate",
                        Body=state(""))  # fmt: skip
    cloud.s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}/{names['feature/live']}/notes.txt",
                        Body=b"")  # fmt: skip
    live = tmp_path / "live"
    live.write_text("main\nfeature/live\nfeature/old\n")
    backend = backend_file(tmp_path)
    common = ["expired", "--backend", str(backend), "--prefix", PREFIX, "--live", str(live)]

    today = script(cloud, *common, "--days", "7")
    assert today.returncode == 0, today.stderr
    assert today.stdout.splitlines() == [
        f"{names['feature/gone']}\tfeature/gone\tbranch 'feature/gone' is gone"
    ]
    later = (datetime.now(UTC) + timedelta(days=8)).isoformat()
    after_a_week = script(cloud, *common, "--days", "7", "--now", later)
    rows = [line.split("\t") for line in after_a_week.stdout.splitlines()]
    assert sorted(row[0] for row in rows) == sorted(names.values())
    assert {row[1] for row in rows} == set(branches)
    assert any("last applied 8 days ago (limit 7)" in row[2] for row in rows)


def test_forget_deletes_only_a_branch_stacks_state(cloud: Cloud, tmp_path: Path) -> None:
    name = name_of(cloud, "feature/done")
    key = f"{PREFIX}/{name}/terraform.tfstate"
    cloud.s3.put_object(Bucket=BUCKET, Key=key, Body=state("feature/done"))
    backend = backend_file(tmp_path)
    done = script(cloud, "forget", "--backend", str(backend), "--prefix", PREFIX, "--stack", name)
    assert done.returncode == 0, done.stderr
    assert cloud.s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{PREFIX}/").get("KeyCount") == 0
    refused = script(cloud, "forget", "--backend", str(backend), "--prefix", "survey-pipeline",
                     "--stack", "survey-pipeline")  # fmt: skip
    assert refused.returncode == 2 and "not a branch stack name" in refused.stderr


def test_an_unfilled_backend_file_says_what_to_do(cloud: Cloud, tmp_path: Path) -> None:
    live = tmp_path / "live"
    live.write_text("main\n")
    result = script(cloud, "expired", "--backend", str(REPO / "terraform/envs/branch.backend.hcl"),
                    "--prefix", PREFIX, "--live", str(live), "--days", "7")  # fmt: skip
    assert result.returncode == 2
    assert "set bucket to the Terraform state bucket's" in result.stderr
