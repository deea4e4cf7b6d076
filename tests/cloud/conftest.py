"""A real ``moto_server`` process for the cloud tests, and what they share.

The server runs once per session on a free loopback port; every test gets it reset, with
an S3 bucket, an ECS cluster (EC2 launch type: moto cannot start Fargate tasks with
awsvpc networking) with two registered container instances, a task definition that logs
to CloudWatch, and a Batch queue. ECS tasks stay RUNNING until they are stopped (moto's
state manager is told so), which is how a real long program looks from outside.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.conftest import REPO

BIN = Path(sys.executable).parent
REGION = "us-east-1"
BUCKET = "pipeline-test"
CLUSTER = "survey-test"
TASK_DEFINITION = "estimator-test"
CONTAINER = "estimator"
LOG_GROUP = "/ecs/survey-test"
LOG_PREFIX = "pipeline"
QUEUE = "survey-test-queue"
JOB_DEFINITION = "estimator-test-job"
MOTO_AMI = "ami-12c6146b"  # one of the images moto's EC2 knows

# A stand-in for the estimation program: plausible estimates from the input's share
# columns, or the failure modes the tests need.
TOY_PROGRAM = """
import os, pathlib, signal, sys, time
mode, inp, out = sys.argv[1], sys.argv[2], pathlib.Path(sys.argv[3])
print(f"toy program: mode={mode} input={inp}", flush=True)
if mode == "fail" or (mode.startswith("fail-for:") and
                     pathlib.Path(inp).stem == mode.split(":", 1)[1]):
    print("ValueError: column 'n_patients' is empty", file=sys.stderr, flush=True)
    sys.exit(3)
if mode == "hang":
    time.sleep(600)
if mode == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    while True:
        time.sleep(0.1)
import pandas as pd  # after the modes above: a slow import must not delay their setup
frame = pd.read_parquet(inp) if inp.endswith(".parquet") else pd.read_csv(inp)
rows = []
for column in [c for c in frame.columns if c.startswith("share_")]:
    mean = float(frame[column].mean()) if frame[column].notna().any() else 1.0
    rows.append((column.removeprefix("share_"), mean, mean * 0.9, mean * 1.1))
pd.DataFrame(rows, columns=["treatment", "estimate", "ci_low", "ci_high"]).to_csv(
    out / "estimates.csv", index=False
)
print(f"wrote {len(rows)} estimates", flush=True)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def aws_env(url: str) -> dict[str, str]:
    """Dummy credentials and the local endpoint: nothing can reach real AWS."""
    return {
        "AWS_ENDPOINT_URL": url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }


def _post(url: str, body: dict[str, Any] | None = None) -> None:
    data = json.dumps(body or {}).encode()
    request = urllib.request.Request(url, data=data, method="POST",
                                     headers={"Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A ``moto_server`` subprocess on 127.0.0.1:<free port>; killed at the end."""
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto_server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
            stdout=out, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"{url}/moto-api/config", timeout=2) as response:
                response.read()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"moto_server did not start:\n{log.read_text()}") from None
            time.sleep(0.1)
    try:
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Cloud:
    """The reset moto server with the test's resources, and clients for it."""

    url: str
    env: dict[str, str]
    root: str
    home: Path
    clients: dict[str, Any] = field(default_factory=dict)

    def client(self, service: str) -> Any:
        if service not in self.clients:
            self.clients[service] = boto3.session.Session().client(
                service, region_name=REGION, endpoint_url=self.url,
                aws_access_key_id="testing", aws_secret_access_key="testing",
            )  # fmt: skip
        return self.clients[service]

    @property
    def ecs(self) -> Any:
        return self.client("ecs")

    @property
    def s3(self) -> Any:
        return self.client("s3")

    @property
    def logs(self) -> Any:
        return self.client("logs")

    @property
    def batch(self) -> Any:
        return self.client("batch")

    def running_tasks(self, **tag_filter: str) -> list[dict[str, Any]]:
        """Pipeline tasks still meant to run (desiredStatus RUNNING), with tags."""
        arns = self.ecs.list_tasks(cluster=CLUSTER, desiredStatus="RUNNING")["taskArns"]
        if not arns:
            return []
        tasks = []
        for start in range(0, len(arns), 100):
            tasks += self.ecs.describe_tasks(
                cluster=CLUSTER, tasks=arns[start : start + 100], include=["TAGS"]
            )["tasks"]
        return [
            t for t in tasks
            if all(tags_of(t).get(k) == v for k, v in tag_filter.items())
        ]  # fmt: skip

    def put_log(self, stream: str, lines: list[str], group: str = LOG_GROUP) -> None:
        with contextlib.suppress(self.logs.exceptions.ResourceAlreadyExistsException):
            self.logs.create_log_stream(logGroupName=group, logStreamName=stream)
        if not lines:
            return
        now = int(time.time() * 1000)
        self.logs.put_log_events(
            logGroupName=group,
            logStreamName=stream,
            logEvents=[{"timestamp": now + i, "message": line} for i, line in enumerate(lines)],
        )

    def set_transition(self, model: str, transition: dict[str, Any]) -> None:
        _post(f"{self.url}/moto-api/state-manager/set-transition",
              {"model_name": model, "transition": transition})  # fmt: skip

    def config_file(self, path: Path, **sections: dict[str, Any]) -> Path:
        """A LUIGI_CONFIG_PATH override pointing the executors at this server's resources."""
        base: dict[str, dict[str, Any]] = {
            "ecs": {
                "cluster": CLUSTER, "task_definition": TASK_DEFINITION,
                "container_name": CONTAINER, "launch_type": "EC2",
                "poll_interval": 0.2, "poll_max_interval": 1,
            },
            "batch": {"job_queue": QUEUE, "job_definition": JOB_DEFINITION,
                      "poll_interval": 0.2, "poll_max_interval": 1},
            "reaper": {"lease_ttl": 3, "lease_interval": 0.5, "deadline_grace": 600},
            "storage": {"root": self.root},
        }  # fmt: skip
        for name, values in sections.items():
            base.setdefault(name, {}).update(values)
        text = "".join(
            f"[{name}]\n" + "".join(f"{k} = {v}\n" for k, v in values.items()) + "\n"
            for name, values in base.items()
        )
        path.write_text(text)
        return path


_CLIENTS: dict[str, dict[str, Any]] = {}  # clients outlive a test: they are slow to make


def tags_of(task: dict[str, Any]) -> dict[str, str]:
    return {t["key"]: t["value"] for t in task.get("tags") or []}


def _setup(cloud: Cloud) -> None:
    cloud.s3.create_bucket(Bucket=BUCKET)
    cloud.ecs.create_cluster(clusterName=CLUSTER)
    cloud.ecs.register_task_definition(
        family=TASK_DEFINITION,
        networkMode="bridge",
        requiresCompatibilities=["EC2"],
        containerDefinitions=[
            {
                "name": CONTAINER,
                "image": "estimator:test",
                "essential": True,
                "cpu": 0,
                "memory": 16,  # tiny, so hundreds of tasks fit on moto's container instances
                "logConfiguration": {
                    "logDriver": "awslogs",
                    "options": {
                        "awslogs-group": LOG_GROUP,
                        "awslogs-region": REGION,
                        "awslogs-stream-prefix": LOG_PREFIX,
                    },
                },
            }
        ],
    )
    # moto places EC2-launch tasks on registered container instances (4096 CPU units and
    # 7482 MiB each): moto EC2 instances, registered with an instance identity document.
    ec2 = cloud.client("ec2")
    instances = ec2.run_instances(
        ImageId=MOTO_AMI, MinCount=2, MaxCount=2, InstanceType="m5.24xlarge"
    )["Instances"]
    for instance in instances:
        cloud.ecs.register_container_instance(
            cluster=CLUSTER,
            instanceIdentityDocument=json.dumps(
                {"instanceId": instance["InstanceId"], "region": REGION,
                 "instanceType": "m5.24xlarge"}
            ),
        )  # fmt: skip
    cloud.logs.create_log_group(logGroupName=LOG_GROUP)
    iam = cloud.client("iam")
    role = iam.create_role(RoleName="batch-service", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    env = cloud.batch.create_compute_environment(
        computeEnvironmentName="survey-test-ce", type="UNMANAGED", state="ENABLED",
        serviceRole=role,
    )  # fmt: skip
    cloud.batch.create_job_queue(
        jobQueueName=QUEUE, state="ENABLED", priority=1,
        computeEnvironmentOrder=[{"order": 1, "computeEnvironment": env["computeEnvironmentArn"]}],
    )  # fmt: skip
    cloud.batch.register_job_definition(
        jobDefinitionName=JOB_DEFINITION,
        type="container",
        containerProperties={"image": "estimator:test", "vcpus": 1, "memory": 512},
    )


@pytest.fixture
def cloud(
    moto_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pipeline_home: Path
) -> Iterator[Cloud]:
    """The moto server, reset, with this test's resources and the environment pointing
    at it (dummy credentials; PIPELINE_STORAGE_ROOT on its S3). Afterwards the leases an
    executor called in this process holds are closed, as the process's exit would."""
    _post(f"{moto_server}/moto-api/reset")
    _post(f"{moto_server}/moto-api/config", {"batch": {"use_docker": False}})
    env = aws_env(moto_server)
    for name in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    root = f"s3://{BUCKET}/work"
    monkeypatch.setenv("PIPELINE_STORAGE_ROOT", root)
    cloud = Cloud(
        moto_server, env, root, pipeline_home, clients=_CLIENTS.setdefault(moto_server, {})
    )
    # Tasks stay RUNNING until stopped, however often they are described.
    cloud.set_transition("ecs::task", {"progression": "manual", "times": 10**9})
    _setup(cloud)
    yield cloud
    from pipeline.executors import lease

    lease.close_keepers()


def write_toy_program(directory: Path, mode: str = "ok", timeout: str = "5m") -> Path:
    """A program spec (TOML) around ``TOY_PROGRAM``; returns the spec's path."""
    program = directory / "toy.py"
    program.write_text(TOY_PROGRAM)
    spec = directory / f"toy-{mode}.toml"
    spec.write_text(
        'name = "toy"\nversion = "1.0"\nimage = "toy:1.0"\n'
        f'command = ["python", "{program}", "{mode}", "{{input}}", "{{output_dir}}"]\n'
        f'timeout = "{timeout}"\ncpu = 2048\nmemory = 4096\n'
        '[outputs]\nresults = "estimates.csv"\n'
    )
    return spec


def container_env(cloud: Cloud) -> dict[str, str]:
    """The environment a test-run container gets: the local endpoint, this venv first."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(cloud.env)
    env["PATH"] = os.pathsep.join([str(BIN), env.get("PATH", "")])
    env["PYTHONPATH"] = str(REPO)
    return env


class FakeAgent:
    """Plays the ECS agent for tasks moto cannot run: for every RUNNING pipeline task that
    ``should_run`` accepts, runs its container command (the wrapper) as a local process
    against moto, ships its output to the task's CloudWatch stream, and stops the task
    (moto reports exit code 0 for every stopped task)."""

    def __init__(self, cloud: Cloud, should_run: Callable[[dict[str, str]], bool]) -> None:
        self.cloud, self.should_run = cloud, should_run
        self.seen: set[str] = set()
        self.ran: list[dict[str, str]] = []
        self.exit_codes: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self.errors: list[BaseException] = []

    def __enter__(self) -> FakeAgent:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        while not self._stop.wait(0.2):
            try:
                for task in self.cloud.running_tasks(pipeline="survey-pipeline"):
                    arn, tags = task["taskArn"], tags_of(task)
                    if arn in self.seen or not self.should_run(tags):
                        continue
                    self.seen.add(arn)
                    self.run_task(task)
            except Exception as exc:  # surfaced by the test
                self.errors.append(exc)

    def run_task(self, task: dict[str, Any]) -> None:
        arn = task["taskArn"]
        (override,) = task["overrides"]["containerOverrides"]
        proc = subprocess.run(
            override["command"], cwd=REPO, env=container_env(self.cloud),
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        self.exit_codes[arn] = proc.returncode
        self.ran.append(tags_of(task))
        lines = (proc.stdout + proc.stderr).splitlines()
        self.cloud.put_log(f"{LOG_PREFIX}/{CONTAINER}/{arn.rsplit('/', 1)[-1]}", lines)
        self.cloud.ecs.stop_task(cluster=CLUSTER, task=arn, reason="Essential container exited")


def run_pipeline(
    cloud: Cloud, *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``pipeline ARGS`` as a separate process against the moto server."""
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args],
        cwd=REPO, env={**container_env(cloud), **(env or {})},
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
