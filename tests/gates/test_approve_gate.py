"""The golden-case gate of `pipeline approve` holds where approve runs.

Jenkins' Regress stage (the exact shell step of jenkins/Jenkinsfile, with the environment
it has on main) records `pipeline regress` in the storage root of every stack the build
deploys — here S3 on a real moto_server, the roots coming from a stand-in `terraform
output` — and `pipeline approve` in another PIPELINE_HOME that knows only that storage root
and the warehouse finds the record and publishes. Without a passing record of the build it
publishes, approve refuses and says where it looked and what to run, unless a person
accepts it with a reason (recorded with the approval)."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import boto3
import pandas as pd
import pytest

from pipeline.core.spec import ProgramSpec, load_spec
from pipeline.warehouse import open_warehouse
from tests.cloud.conftest import REGION, aws_env
from tests.conftest import REPO
from tests.gates.test_regress import D1, golden_noop
from tests.ops.conftest import home_env, pipeline
from tests.warehouse.helpers import results, survey

JENKINSFILE = REPO / "jenkins" / "Jenkinsfile"
BUCKET = "regress-gate"
# Stand-in for terraform: `init` succeeds, `output -raw storage_root` prints the storage
# root of the stack whose data directory make chose (TF_DATA_DIR=.terraform/<stack>).
FAKE_TERRAFORM = """#!/bin/sh
echo "$TF_DATA_DIR $*" >> "$FAKE_TERRAFORM_LOG"
case " $* " in
  *" init "*) exit 0 ;;
  *" output -raw storage_root "*)
    printf 's3://%s/%s/work' "$FAKE_BUCKET" "${TF_DATA_DIR##*/}"; exit 0 ;;
esac
echo "fake terraform: unexpected arguments: $*" >&2
exit 1
"""


@pytest.fixture
def s3(moto_server: str) -> Iterator[dict[str, str]]:
    """An empty bucket on the moto server; yields the AWS environment for it."""
    client = boto3.client(
        "s3", region_name=REGION, endpoint_url=moto_server,
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )  # fmt: skip
    client.create_bucket(Bucket=BUCKET)
    try:
        yield aws_env(moto_server)
    finally:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
            for item in page.get("Contents", []):
                client.delete_object(Bucket=BUCKET, Key=item["Key"])
        client.delete_bucket(Bucket=BUCKET)


def s3_keys(env: dict[str, str], prefix: str) -> list[str]:
    client = boto3.client(
        "s3", region_name=REGION, endpoint_url=env["AWS_ENDPOINT_URL"],
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )  # fmt: skip
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


def regress_step_on_main() -> tuple[str, dict[str, str]]:
    """The shell step of the Regress stage, and the environment Jenkins gives it on main
    (every `NAME = "${env.BRANCH_NAME == 'main' ? 'X' : 'Y'}"` of the file, as X)."""
    text = JENKINSFILE.read_text()
    parts = re.split(r"stage\('([^']+)'\)", text)
    body = parts[parts.index("Regress") + 1]
    steps = re.findall(r"\bsh\s+'([^']+)'", body)
    assert len(steps) == 1 and steps[0].startswith("make regress"), steps
    main_env = dict(
        re.findall(r"(\w+) = \"\$\{env\.BRANCH_NAME == 'main' \? '([^']*)' : '[^']*'\}\"", text)
    )
    return steps[0], {**main_env, "BRANCH_NAME": "main", "BRANCH": "main"}


def run_make(step: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # `-o install`: the venv is there; never let a touched setup.cfg start pip in a test.
    assert step.startswith("make ")
    command = "make -o install " + step.removeprefix("make ")
    return subprocess.run(
        ["bash", "-c", command], cwd=REPO, env={**os.environ, **env},
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def deliver(
    uri: str,
    spec: ProgramSpec,
    *,
    later: bool = False,
    cohort: str = "a",
    cohorts: list[str] | None = None,
) -> None:
    """A delivered (ingested, not approved) ``cohort`` of D1 (of the survey of
    ``cohorts``) with results of ``spec``'s build, as its variant."""
    warehouse = open_warehouse(uri)
    warehouse.replace(D1, None, survey(dict.fromkeys(cohorts or [cohort], 3)))
    data = results([10.0, 20.0])
    for name in data:
        data[name] = data[name].assign(
            program_name=spec.name, program_version=spec.version,
            program_fingerprint=spec.fingerprint,
        )  # fmt: skip
    runs = data["pipeline_runs"].assign(status="succeeded")
    if later:
        runs["finished_at"] = runs["finished_at"] + pd.Timedelta(hours=1)
    data["pipeline_runs"] = runs
    warehouse.replace(D1, cohort, data, variant=spec.slug)


def approvals(uri: str) -> list[list[object]]:
    rows = open_warehouse(uri).query(
        "SELECT approved_by, variant, accepted_regression FROM published.approvals"
    )
    return rows.astype(object).where(rows.notna(), None).values.tolist()


def test_jenkins_regress_records_where_production_approve_reads(
    tmp_path: Path, s3: dict[str, str]
) -> None:
    agent, office = tmp_path / "agent", tmp_path / "office"
    agent.mkdir()
    office.mkdir()
    spec_path = golden_noop(agent, expected_y=55.0)
    spec = load_spec(spec_path)
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "terraform").write_text(FAKE_TERRAFORM)
    (fake / "terraform").chmod(0o755)
    log = tmp_path / "terraform.log"

    step, jenkins_env = regress_step_on_main()
    made = run_make(
        step,
        {
            **jenkins_env, **s3, "PIPELINE_HOME": str(agent), "PROGRAMS": str(spec_path),
            "PIPELINE_STORAGE_ROOT": "", "PIPELINE_RESPONDENT_KEY": "test-key-not-a-secret",
            "PATH": f"{fake}:{os.environ['PATH']}", "FAKE_BUCKET": BUCKET,
            "FAKE_TERRAFORM_LOG": str(log),
        },
    )  # fmt: skip
    assert made.returncode == 0, made.stdout + made.stderr
    # main deploys staging and then production: both stacks' roots hold the record.
    prod, staging = "survey-pipeline", "survey-pipeline-staging"
    for stack in (prod, staging):
        root = f"s3://{BUCKET}/{stack}/work"
        assert f"recorded in {root}/regress/{spec.slug}/result.json" in made.stdout
        assert f"{stack}/work/regress/{spec.slug}/result.json" in s3_keys(s3, stack)
        assert f".terraform/{stack} -chdir=terraform/stack init" in log.read_text()
    assert not (agent / "work" / "regress").exists()

    # Production's approve: a PIPELINE_HOME with only the storage root and the warehouse.
    uri = f"duckdb://{office / 'warehouse.duckdb'}"
    deliver(uri, spec)
    env = {**s3, "PIPELINE_STORAGE_ROOT": f"s3://{BUCKET}/{prod}/work"}
    args = ("approve", "--run-date", str(D1), "--by", "Jane", "--warehouse", uri)
    approved = pipeline(office, *args, "--variant", spec.slug, **env)
    assert approved.returncode == 0, approved.stdout + approved.stderr
    assert f"{spec.slug} passed its golden case(s)" in approved.stdout.replace(
        f"{spec.name} {spec.version} ({spec.fingerprint})", spec.slug
    )
    assert approvals(uri) == [["Jane", spec.slug, None]]


def test_no_record_in_the_storage_root_refuses_unless_accepted(
    tmp_path: Path, s3: dict[str, str]
) -> None:
    spec_path = golden_noop(tmp_path, expected_y=55.0)
    spec = load_spec(spec_path)
    # The record exists, but on the laptop: not where production's approve looks.
    laptop = pipeline(tmp_path, "regress", "--program", str(spec_path))
    assert laptop.returncode == 0, laptop.stdout + laptop.stderr
    office = tmp_path / "office"
    office.mkdir()
    uri = f"duckdb://{office / 'warehouse.duckdb'}"
    deliver(uri, spec)
    root = f"s3://{BUCKET}/survey-pipeline/work"
    env = {**s3, "PIPELINE_STORAGE_ROOT": root}
    args = ("approve", "--run-date", str(D1), "--by", "Jane", "--warehouse", uri,
            "--variant", spec.slug)  # fmt: skip

    refused = pipeline(office, *args, **env)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    message = " ".join(refused.stderr.split())
    assert "REFUSED" in message and spec.slug in message
    assert f"no `pipeline regress` record at {root}/regress/{spec.slug}/result.json" in message
    assert "make regress" in message and "pipeline regress --program" in message
    assert f"--root {root}" in message and "--accept-regression" in message
    assert open_warehouse(uri).publication_status(D1)["approved_by"].isna().all()

    reason = "golden case run by hand on the release branch (ticket 7)"
    accepted = pipeline(office, *args, "--accept-regression", reason, **env)
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    assert f"accepted: {reason}" in accepted.stdout
    assert approvals(uri) == [["Jane", spec.slug, reason]]


def test_a_failed_record_in_s3_refuses(tmp_path: Path, s3: dict[str, str]) -> None:
    spec_path = golden_noop(tmp_path, expected_y=58.0)
    spec = load_spec(spec_path)
    root = f"s3://{BUCKET}/survey-pipeline/work"
    failed = pipeline(tmp_path, "regress", "--program", str(spec_path), "--root", root, **s3)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert f"recorded in {root}/regress/{spec.slug}/result.json" in failed.stdout
    office = tmp_path / "office"
    office.mkdir()
    uri = f"duckdb://{office / 'warehouse.duckdb'}"
    deliver(uri, spec)
    refused = pipeline(office, "approve", "--run-date", str(D1), "--by", "Jane", "--warehouse",
                       uri, "--variant", spec.slug, **s3, PIPELINE_STORAGE_ROOT=root)  # fmt: skip
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "failed golden case(s) tiny" in refused.stderr
    assert open_warehouse(uri).publication_status(D1)["approved_by"].isna().all()


def test_the_gate_checks_the_build_it_publishes(tmp_path: Path) -> None:
    """Two builds of the program are ingested; only the later, not the champion, passed
    its golden case: approving the champion is refused, naming the champion's build."""
    champion_path = golden_noop(tmp_path, expected_y=55.0)
    champion = load_spec(champion_path)
    other_path = tmp_path / "noop-1.0.1.toml"
    other_path.write_text(
        champion_path.read_text().replace('version = "1.0.0"', 'version = "1.0.1"')
    )
    other = load_spec(other_path)
    assert other.slug != champion.slug
    ok = pipeline(tmp_path, "regress", "--program", str(other_path))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    uri = f"duckdb://{tmp_path / 'warehouse.duckdb'}"
    deliver(uri, champion)
    deliver(uri, other, later=True)  # the latest succeeded run is the other build's
    cfg = tmp_path / "champion.cfg"
    cfg.write_text(f"[pipeline]\nprogram = {champion_path}\n")
    args = ("approve", "--run-date", str(D1), "--by", "Jane", "--warehouse", uri)
    refused = pipeline(tmp_path, *args, LUIGI_CONFIG_PATH=str(cfg))
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert champion.slug in " ".join(refused.stderr.split())
    assert open_warehouse(uri).publication_status(D1)["approved_by"].isna().all()
    # The build that passed is approved when named.
    approved = pipeline(tmp_path, *args, "--variant", other.slug, LUIGI_CONFIG_PATH=str(cfg))
    assert approved.returncode == 0, approved.stdout + approved.stderr
    assert approvals(uri) == [["Jane", other.slug, None]]


def test_make_regress_on_a_laptop_records_under_the_local_root(tmp_path: Path) -> None:
    spec_path = golden_noop(tmp_path, expected_y=55.0)
    spec = load_spec(spec_path)
    made = run_make(
        f"make regress PROGRAMS={spec_path}",
        {**home_env(tmp_path), "PIPELINE_HOME": str(tmp_path)},
    )
    assert made.returncode == 0, made.stdout + made.stderr
    record = tmp_path / "work" / "regress" / spec.slug / "result.json"
    assert record.is_file() and f"recorded in {record}" in made.stdout


def test_a_delivery_of_one_build_reads_its_record_once(
    tmp_path: Path, s3: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every cohort of a delivery is gated on the same build's record: approve reads it
    from the storage root once, not once per cohort (two requests each, to S3 from
    wherever approve runs)."""
    from pipeline import storage
    from pipeline.cli import main
    from tests.cloud.test_storage_s3 import requests_made

    spec_path = golden_noop(tmp_path, expected_y=55.0)
    spec = load_spec(spec_path)
    root = f"s3://{BUCKET}/survey-pipeline/work"
    passed = pipeline(tmp_path, "regress", "--program", str(spec_path), "--root", root, **s3)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    uri = f"duckdb://{tmp_path / 'warehouse.duckdb'}"
    codes = ["a", "b", "c"]
    for code in codes:
        deliver(uri, spec, cohort=code, cohorts=codes)
    for key, value in {**s3, "PIPELINE_STORAGE_ROOT": root}.items():
        monkeypatch.setenv(key, value)
    # The process's S3 client is made once, for the endpoint of the first test that used
    # it: this one needs its own (this directory's moto server).
    monkeypatch.setattr(storage, "_client", None)
    made = requests_made(storage.s3_client())
    args = ["approve", "--run-date", str(D1), "--by", "Jane", "--warehouse", uri]
    assert main([*args, "--variant", spec.slug]) == 0
    # the record (a HEAD and a GET), and the date's raw-file pin that --cohort codes are
    # checked against (a HEAD and a LIST), once for the command
    assert made.count("GetObject") == 1 and len(made) <= 4, made
    assert approvals(uri) == [["Jane", spec.slug, None]] * len(codes)
