"""The parts of one production day on this machine, for ``test_day.py``.

Everything real that can be: a ``moto_server`` (S3, ECS, Batch, Logs), luigid started
with the container command of ``terraform/modules/luigid`` (read with python-hcl2), the
BigQuery wire stand-in (``tests/warehouse/bqfake.py``) behind the real client, a UDP
socket for DogStatsD, and the cron command of ``terraform/modules/platform`` run by
``sh -c`` with the worker task definition's environment (its keys read from the HCL).

What plays a part of AWS that moto cannot: ``ConcurrentAgent`` is the ECS agent. For
every RUNNING pipeline task it starts the container command (the wrapper) with the
task's environment overrides as a process of its own, all of them at once, and when one
exits it ships its output to the task's CloudWatch stream and stops the task.

The program is a toy (``PROGRAM``): stdlib only, it records every start, waits for its
cohort's gate file (so the test decides when programs end) and fails while its cohort's
fault file exists (a broken reference file: the thing an operator fixes).
"""

from __future__ import annotations

import configparser
import contextlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from tests.cloud.conftest import (
    BUCKET,
    CLUSTER,
    CONTAINER,
    JOB_DEFINITION,
    LOG_GROUP,
    LOG_PREFIX,
    QUEUE,
    REGION,
    TASK_DEFINITION,
    Cloud,
    aws_env,
    free_port,
    tags_of,
)
from tests.conftest import REPO
from tests.infra.tf import MODULES, Module
from tests.ops.conftest import terminate_luigid, wait_until_answering

BIN = Path(sys.executable).parent
DATE = "2026-12-07"
RESPONDENT_KEY = "rehearsal-key-not-a-secret"
BQ_PROJECT = "test-project"
ENV = "prod"  # DD_ENV of every container, and the monitors' env filter

PROGRAM = r'''
"""Toy estimation program: records its start, waits for its gate, may fail, writes
estimates from the input's share columns (a CSV header is all it reads)."""
import argparse, json, os, sys, time, uuid
from pathlib import Path

p = argparse.ArgumentParser()
p.add_argument("input")
p.add_argument("output_dir", type=Path)
p.add_argument("--cohort", required=True)
p.add_argument("--offset", type=float, default=0.0)
p.add_argument("--state", type=Path, required=True)
a = p.parse_args()
(a.state / "starts").mkdir(parents=True, exist_ok=True)
(a.state / "starts" / f"{uuid.uuid4().hex}.json").write_text(json.dumps(
    {"cohort": a.cohort, "offset": a.offset, "job": os.environ.get("PIPELINE_JOB", ""),
     "pid": os.getpid(), "at": time.time()}))
gates = a.state / "gates"
deadline = time.monotonic() + 300
while not ((gates / a.cohort).exists() or (gates / "ALL").exists()):
    if time.monotonic() > deadline:
        sys.exit("toy: gate never opened")
    time.sleep(0.05)
if (a.state / "faults" / a.cohort).exists():
    print(f"toy: reference table for {a.cohort} is corrupt: model did not converge",
          file=sys.stderr, flush=True)
    sys.exit(3)
with open(a.input, encoding="utf-8") as fh:
    names = fh.readline().strip().split(",")
treatments = [n.removeprefix("share_") for n in names if n.startswith("share_")]
rows = "".join(
    f"{t},{50 + 5 * i + a.offset},{40 + 5 * i + a.offset},{60 + 5 * i + a.offset}\n"
    for i, t in enumerate(treatments)
)
(a.output_dir / "estimates.csv").write_text("treatment,estimate,ci_low,ci_high\n" + rows)
print(f"toy: wrote {len(treatments)} estimates for {a.cohort}", flush=True)
'''


# ---------------------------------------------------------------- what Terraform declares


def platform() -> Module:
    return Module(MODULES / "platform")


def cron_command(run_date: str, scheduler_url: str) -> list[str]:
    """The daily-run schedule's container command as terraform/modules/platform declares
    it: ``["sh", "-c", local.run_command]``, with the date the shell would compute and
    luigid's URL (a module output) filled in, as the module's manual-run output does."""
    module = platform()
    (command,) = [
        body["schedules"]["daily-run"]["command"]
        for name, body in module.labelled("module").items()
        if name == "schedules"
    ]
    assert command[:2] == ["sh", "-c"] and command[2] == "${local.run_command}", command
    text = module.locals()["run_command"]
    for placeholder in ('"$(date -u +%F)"', "${module.luigid.scheduler_url}"):
        assert text.count(placeholder) == 1, (placeholder, text)
    text = text.replace('"$(date -u +%F)"', run_date)
    text = text.replace("${module.luigid.scheduler_url}", scheduler_url)
    return ["sh", "-c", text]


def luigid_command(port: int, state_dir: Path, log_dir: Path) -> list[str]:
    """luigid's container command (terraform/modules/luigid), with a local state directory
    (the EFS mount), log directory and port; plus ``--address 127.0.0.1`` (loopback only
    here; the container listens on every interface of its task)."""
    task = Module(MODULES / "luigid").labelled("module")["task"]
    command = list(task["command"])
    efs = task["efs_volume"]["container_path"]
    logs = task["scratch_volumes"]["luigid-logs"]
    replaced = []
    for arg in command:
        if arg == "${tostring(var.port)}":
            arg = str(port)
        elif arg.startswith(efs + "/"):
            arg = str(state_dir / arg[len(efs) + 1 :])
        elif arg == logs:
            arg = str(log_dir)
        elif arg == "luigid":
            arg = str(BIN / "luigid")
        assert "${" not in arg and not arg.startswith("/var/"), arg
        replaced.append(arg)
    return [*replaced, "--address", "127.0.0.1"]


def worker_env_keys() -> list[str]:
    """The environment the worker task definition gives its container (platform/tasks.tf)
    and the task module adds (region, DogStatsD)."""
    worker = platform().labelled("module")["worker_task"]
    keys = list(worker["environment"]) + list(worker["secrets"])
    task = Module(MODULES / "task").locals()
    keys += re.findall(r"\b(DD_[A-Z_]+|AWS_[A-Z_]+) =", str(task["dogstatsd_environment"]))
    keys += list(task["region_environment"])
    return keys


def monitored_queries() -> list[str]:
    """Every metric query of terraform/modules/monitoring (monitors and dashboard), read
    from the HCL."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
        elif isinstance(node, str) and "survey_pipeline." in node:
            found.append(node)

    module = Module(MODULES / "monitoring")
    for kind in ("resource", "locals"):
        for _, block in module.blocks(kind):
            walk(block)
    return found


QUERY = re.compile(r"survey_pipeline\.([a-z_.]+)\{([^}]*)\}(?:\s*by\s*\{([a-z_,]+)\})?")


def metric_uses(queries: list[str], env: str) -> dict[str, dict[str, set[str]]]:
    """Per queried metric: tag key -> required values (empty: any value, a ``by``)."""
    uses: dict[str, dict[str, set[str]]] = {}
    for text in queries:
        text = text.replace("${local.filter}", f"env:{env}")
        for name, scope, by in QUERY.findall(text):
            tags = uses.setdefault(name, {})
            for term in filter(None, (t.strip() for t in scope.split(","))):
                if term == "*":
                    continue
                key, _, value = term.partition(":")
                tags.setdefault(key, set()).add(value)
            for key in filter(None, by.split(",")):
                tags.setdefault(key, set())
    return uses


# ---------------------------------------------------------------- programs


def write_programs(directory: Path, golden_cohort: str) -> tuple[Path, Path]:
    """The champion spec (with a golden case) and the challenger (a variant TOML that
    extends it with another param)."""
    directory.mkdir(parents=True, exist_ok=True)
    state = directory / "state"
    for sub in ("gates", "faults", "starts"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    program = directory / "toy_program.py"
    program.write_text(PROGRAM)
    golden = directory / "golden"
    golden.mkdir(exist_ok=True)
    shares = ["biologic", "ics", "laba"]
    (golden / "input.csv").write_text(
        "cohort,response_id,specialty,region,facility_type,n_patients,"
        + ",".join(f"share_{t}" for t in shares)
        + "\n"
        + "".join(
            f"{golden_cohort},r{i},internal,kanto,clinic,{10 + i},50,30,20\n" for i in range(5)
        )
    )
    (golden / "frame.csv").write_text(
        "specialty,region,facility_type,n_physicians\ninternal,kanto,clinic,100\n"
    )
    (golden / "expected.csv").write_text(
        "treatment,estimate,ci_low,ci_high\n"
        + "".join(f"{t},{50 + 5 * i},{40 + 5 * i},{60 + 5 * i}\n" for i, t in enumerate(shares))
    )
    champion = directory / "toy.toml"
    champion.write_text(
        'name = "toy"\nversion = "1.0.0"\nimage = "toy:1.0.0"\n'
        f'command = ["python", "{program}", "{{input}}", "{{output_dir}}", "--cohort", '
        f'"{{cohort}}", "--offset", "{{params.offset}}", "--state", "{state}"]\n'
        'input_format = "csv"\ntimeout = "5m"\ncpu = 256\nmemory = 512\n'
        "[params]\noffset = 0\n"
        '[outputs]\nresults = "estimates.csv"\n'
        f'[[golden]]\nname = "small"\ncohort = "{golden_cohort}"\n'
        'input = "golden/input.csv"\nframe = "golden/frame.csv"\n'
        'expected = "golden/expected.csv"\n'
    )
    challenger = directory / "toy-offset.toml"
    challenger.write_text('extends = "toy.toml"\n[params]\noffset = 0.5\n')
    return champion, challenger


# ---------------------------------------------------------------- luigid


@dataclass
class LuigidService:
    """luigid as its ECS service runs it; ``start`` again = ECS restarting the task."""

    dir: Path
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def state_dir(self) -> Path:
        return self.dir / "efs"

    @property
    def state_path(self) -> Path:
        return self.state_dir / "state.pickle"

    def command(self) -> list[str]:
        return luigid_command(self.port, self.state_dir, self.dir / "logs")

    def start(self) -> LuigidService:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "logs").mkdir(parents=True, exist_ok=True)
        self.starts += 1
        err = (self.dir / f"stderr-{self.starts}.txt").open("wb")
        self.proc = subprocess.Popen(
            self.command(), cwd=REPO, env=self.env, stdout=subprocess.DEVNULL, stderr=err,
            start_new_session=True,
        )  # fmt: skip
        err.close()
        wait_until_answering(self.proc, self.url, self.stderr)
        return self

    def stderr(self) -> str:
        path = self.dir / f"stderr-{self.starts}.txt"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            terminate_luigid(self.proc, self.url)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=20)

    def running(self) -> dict[str, dict[str, Any]]:
        query = urllib.parse.quote(json.dumps({"status": "RUNNING", "upstream_status": ""}))
        with urllib.request.urlopen(f"{self.url}/api/task_list?data={query}", timeout=5) as r:
            return json.loads(r.read())["response"]


# ---------------------------------------------------------------- the ECS agent


@dataclass
class Started:
    arn: str
    tags: dict[str, str]
    proc: subprocess.Popen[bytes]
    log: Path
    at: float


class ConcurrentAgent:
    """The ECS agent for moto's RUNNING tasks: each task's container command (the wrapper)
    runs as a process of its own session with the task's environment overrides, all at
    once; a finished one has its output put on the task's CloudWatch stream and its task
    stopped (moto then reports exit code 0, as for every stopped task)."""

    def __init__(self, url: str, env: dict[str, str], logs_dir: Path) -> None:
        self.url, self.env, self.logs_dir = url, env, logs_dir
        logs_dir.mkdir(parents=True, exist_ok=True)
        session = boto3.session.Session()
        kwargs = {"region_name": REGION, "endpoint_url": url,
                  "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}  # fmt: skip
        self.ecs = session.client("ecs", **kwargs)
        self.logs = session.client("logs", **kwargs)
        self.seen: set[str] = set()
        self.started: list[Started] = []
        self.live: dict[str, Started] = {}
        self.exit_codes: dict[str, int] = {}
        self.max_live = 0
        self.errors: list[BaseException] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="ecs-agent", daemon=True)

    def __enter__(self) -> ConcurrentAgent:
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        for started in list(self.live.values()):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(started.proc.pid, signal.SIGKILL)
            started.proc.wait()

    def _loop(self) -> None:
        while not self._stop.wait(0.15):
            try:
                self._start_new()
                self._reap_finished()
            except Exception as exc:  # surfaced by the test
                self.errors.append(exc)

    def _running(self) -> list[dict[str, Any]]:
        arns = self.ecs.list_tasks(cluster=CLUSTER, desiredStatus="RUNNING")["taskArns"]
        tasks: list[dict[str, Any]] = []
        for start in range(0, len(arns), 100):
            tasks += self.ecs.describe_tasks(
                cluster=CLUSTER, tasks=arns[start : start + 100], include=["TAGS"]
            )["tasks"]
        return [t for t in tasks if tags_of(t).get("pipeline") == "survey-pipeline"]

    def _start_new(self) -> None:
        for task in self._running():
            arn = task["taskArn"]
            if arn in self.seen:
                continue
            self.seen.add(arn)
            (override,) = task["overrides"]["containerOverrides"]
            env = {**self.env, **{e["name"]: e["value"] for e in override.get("environment", [])}}
            log = self.logs_dir / f"{arn.rsplit('/', 1)[-1]}.log"
            with log.open("wb") as out:
                proc = subprocess.Popen(
                    override["command"], cwd=REPO, env=env, stdout=out,
                    stderr=subprocess.STDOUT, start_new_session=True,
                )  # fmt: skip
            started = Started(arn, tags_of(task), proc, log, time.time())
            with self._lock:
                self.started.append(started)
                self.live[arn] = started
                self.max_live = max(self.max_live, self._alive())

    def _alive(self) -> int:
        return sum(1 for s in self.live.values() if s.proc.poll() is None)

    def _reap_finished(self) -> None:
        for arn, started in list(self.live.items()):
            code = started.proc.poll()
            if code is None:
                continue
            self.exit_codes[arn] = code
            lines = started.log.read_text(errors="replace").splitlines()
            stream = f"{LOG_PREFIX}/{CONTAINER}/{arn.rsplit('/', 1)[-1]}"
            with contextlib.suppress(self.logs.exceptions.ResourceAlreadyExistsException):
                self.logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName=stream)
            now = int(time.time() * 1000)
            events = [{"timestamp": now + i, "message": line or " "} for i, line in
                      enumerate(lines or ["(no output)"])]  # fmt: skip
            self.logs.put_log_events(logGroupName=LOG_GROUP, logStreamName=stream,
                                     logEvents=events)  # fmt: skip
            self.ecs.stop_task(cluster=CLUSTER, task=arn, reason="Essential container exited")
            with self._lock:
                del self.live[arn]

    def alive(self) -> int:
        with self._lock:
            return self._alive()

    def starts(self, store: str) -> Counter[tuple[str, str]]:
        """Wrapper starts per (cohort, spec fingerprint) for tasks of one storage root."""
        return Counter(
            (s.tags["cohort"], s.tags["spec"]) for s in self.started
            if s.tags.get("lease_store") == store
        )  # fmt: skip


# ---------------------------------------------------------------- configuration


def write_cfg(path: Path, base: Path, overrides: dict[str, dict[str, Any]]) -> Path:
    """A LUIGI_CONFIG_PATH file: ``base`` (as the image bakes it) with ``overrides``."""
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.optionxform = str  # type: ignore[assignment,method-assign]
    cfg.read(base)
    for section, values in overrides.items():
        if not cfg.has_section(section):
            cfg.add_section(section)
        for key, value in values.items():
            cfg.set(section, key, str(value))
    with path.open("w") as fh:
        cfg.write(fh)
    return path


def base_env() -> dict[str, str]:
    """This process's environment without anything that could point elsewhere."""
    drop = ("AWS_", "PIPELINE_", "DD_", "LUIGI_", "GOOGLE_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env["PATH"] = os.pathsep.join([str(BIN), env.get("PATH", "")])
    env["PYTHONPATH"] = str(REPO)
    return env


def image_bin(directory: Path) -> Path:
    """What the pipeline image puts on PATH besides the venv: ``fetch-raw``
    (docker/pipeline.Dockerfile: ``COPY --chmod=0755 docker/fetch_raw.py
    /usr/local/bin/fetch-raw``)."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / "fetch-raw"
    shutil.copy(REPO / "docker" / "fetch_raw.py", target)
    target.chmod(0o755)
    return directory


def storage_url(bucket: str = BUCKET, prefix: str = "work") -> str:
    return f"s3://{bucket}/{prefix}"


# ---------------------------------------------------------------- the day


@dataclass
class Day:
    """Everything of the rehearsal, shared by its steps (module scope)."""

    tmp: Path
    moto: str
    cloud: Cloud
    luigid: LuigidService
    agent: ConcurrentAgent
    bq: Any  # tests.warehouse.bqfake.FakeBigQuery
    statsd: Any  # tests.ops.conftest.DogStatsdSink
    codes: list[str]
    failing: str
    champion: Path
    challenger: Path
    worker_cfg: Path
    worker_env: dict[str, str]
    laptop_env: dict[str, str]
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)  # what one step leaves the next

    @property
    def root(self) -> str:
        return self.worker_env["PIPELINE_STORAGE_ROOT"]

    @property
    def state(self) -> Path:
        return self.champion.parent / "state"

    def open_gate(self, *cohorts: str) -> None:
        for cohort in cohorts:
            (self.state / "gates" / cohort).touch()

    def program_starts(self, root: str) -> Counter[tuple[str, float]]:
        """Program starts per (cohort, offset param) for jobs under ``root``."""
        found: Counter[tuple[str, float]] = Counter()
        for path in (self.state / "starts").glob("*.json"):
            record = json.loads(path.read_text())
            if record["job"].startswith(root.rstrip("/") + "/"):
                found[(record["cohort"], float(record["offset"]))] += 1
        return found

    def cron(
        self, env: dict[str, str] | None = None, tag: str = "cron", scheduler: str = ""
    ) -> subprocess.Popen[bytes]:
        """The daily-run schedule's command, with the two variants, as its own session
        (a container of its own); output in ``tmp/<tag>-N.out``."""
        command = cron_command(DATE, scheduler or self.luigid.url)
        command[2] += f" --program {self.champion} --program {self.challenger}"
        out = self.tmp / f"{tag}-{len(self.procs)}.out"
        with out.open("wb") as fh:
            proc = subprocess.Popen(
                command, cwd=REPO, env={**self.worker_env, **(env or {})}, stdout=fh,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        proc.out_path = out  # type: ignore[attr-defined]
        self.procs.append(proc)
        return proc

    def cli(
        self, *args: str, env: dict[str, str], timeout: float = 180
    ) -> subprocess.CompletedProcess[str]:
        """``pipeline ARGS`` in ``env`` (the worker's host, or the laptop)."""
        return subprocess.run(
            [str(BIN / "pipeline"), *args], cwd=REPO, env=env, capture_output=True, text=True,
            timeout=timeout,
        )  # fmt: skip

    def tasks(self, store: str | None = None, running: bool = False) -> list[dict[str, Any]]:
        """Every ECS task of the day (of one storage root), with tags."""
        arns: list[str] = []
        statuses = ["RUNNING"] if running else ["RUNNING", "STOPPED"]
        for status in statuses:
            pages = self.cloud.ecs.get_paginator("list_tasks").paginate(
                cluster=CLUSTER, desiredStatus=status
            )
            arns += [a for page in pages for a in page["taskArns"]]
        tasks: list[dict[str, Any]] = []
        for start in range(0, len(arns), 100):
            tasks += self.cloud.ecs.describe_tasks(
                cluster=CLUSTER, tasks=arns[start : start + 100], include=["TAGS"]
            )["tasks"]
        return [
            t for t in tasks
            if tags_of(t).get("run_date") == DATE
            and (store is None or tags_of(t).get("lease_store") == store)
        ]  # fmt: skip

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.agent.close()
        self.luigid.kill()
        with contextlib.suppress(Exception):
            for task in self.tasks(running=True):
                self.cloud.ecs.stop_task(cluster=CLUSTER, task=task["taskArn"], reason="teardown")
        self.statsd.close()


def upload_dir(cloud: Cloud, local: Path, prefix: str) -> None:
    for path in sorted(local.rglob("*")):
        if path.is_file():
            key = f"{prefix.rstrip('/')}/{path.relative_to(local).as_posix()}"
            cloud.s3.upload_file(str(path), BUCKET, key)


def open_day(tmp: Path, moto: str) -> Day:
    """Set the day up: cloud resources, the raw export in S3, programs, the BigQuery
    stand-in, DogStatsD, luigid (started, cleanly stopped once as a deploy does, started
    again) and the ECS agent. The caller closes it (``Day.close``)."""
    from pytest_httpserver import HTTPServer

    from pipeline.sampledata import generate
    from tests.cloud.conftest import _post, _setup
    from tests.ops.conftest import DogStatsdSink
    from tests.warehouse.bqfake import FakeBigQuery

    _post(f"{moto}/moto-api/reset")
    _post(f"{moto}/moto-api/config", {"batch": {"use_docker": False}})
    cloud = Cloud(moto, aws_env(moto), storage_url(), tmp / "unused-home")
    cloud.set_transition("ecs::task", {"progression": "manual", "times": 10**9})
    _setup(cloud)

    export = tmp / "export"
    generate(export, cohorts=12, respondents=60, seed=11)
    upload_dir(cloud, export, "raw")
    lines = (export / "cohorts.csv").read_bytes().decode("cp932").splitlines()[1:]
    codes = [line.split(",")[0] for line in lines if line]
    failing = codes[0]
    champion, challenger = write_programs(tmp / "programs", golden_cohort=codes[1])
    (champion.parent / "state" / "faults" / failing).touch()

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = HTTPServer(host="127.0.0.1", port=free_port())
    server.start()
    bq = FakeBigQuery(server)
    statsd = DogStatsdSink()
    dd = {"DD_AGENT_HOST": "127.0.0.1", "DD_DOGSTATSD_PORT": str(statsd.port),
          "DD_ENV": ENV, "DD_SERVICE": "survey-pipeline"}  # fmt: skip
    region = {"AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION}

    luigid_home = tmp / "luigid"
    luigid_cfg = write_cfg(
        tmp / "luigid.cfg",
        REPO / "docker" / "luigid.cloud.cfg",
        # luigid hands a killed worker's RUNNING tasks to another worker once it has
        # pruned that worker: luigi's defaults are 60 s without contact, checked by a 60 s
        # timer. The rehearsal's restart comes seconds after the kill (docs/executors.md,
        # "Limits"), so luigid prunes on every get_work after 2 s without contact.
        {"scheduler": {"worker_disconnect_delay": 2, "prune_on_get_work": "true"}},
    )
    luigid = LuigidService(
        luigid_home,
        env={**base_env(), **dd, **region, "LUIGI_CONFIG_PATH": str(luigid_cfg),
             "PIPELINE_HOME": str(luigid_home / "pipeline-home")},
    )  # fmt: skip
    luigid.start().stop()  # a deploy's clean shutdown: the state file it restarts from

    worker_cfg = write_cfg(
        tmp / "worker.cfg",
        REPO / "docker" / "luigi.cloud.cfg",
        {
            "pipeline": {"program": str(champion)},
            "ecs": {"poll_interval": 0.2, "poll_max_interval": 1},
            "reaper": {
                "lease_ttl": 4,
                "lease_interval": 0.5,
                "deadline_grace": 600,
                "executors": "ecs",
            },
            "core": {"rpc_retry_wait": 1, "rpc_retry_attempts": 60},
            "run": {"log_upload_interval": 1},
        },
    )
    values: dict[str, str | None] = {
        "LUIGI_CONFIG_PATH": str(worker_cfg),
        "PIPELINE_STORAGE_ROOT": storage_url(),
        "PIPELINE_RAW_URI": f"s3://{BUCKET}/raw/",
        "PIPELINE_WAREHOUSE": f"bigquery://{BQ_PROJECT}/survey",
        "PIPELINE_SCHEDULER_HOST": "127.0.0.1",
        "PIPELINE_SCHEDULER_PORT": str(luigid.port),
        "PIPELINE_ECS_CLUSTER": CLUSTER,
        "PIPELINE_ECS_TASK_DEFINITION": TASK_DEFINITION,
        "PIPELINE_ECS_LAUNCH_TYPE": "EC2",  # moto cannot start Fargate (awsvpc) tasks
        "PIPELINE_ECS_CAPACITY_PROVIDER": "",
        "PIPELINE_ECS_SUBNETS": "",
        "PIPELINE_ECS_SECURITY_GROUPS": "",
        "PIPELINE_BATCH_JOB_QUEUE": QUEUE,
        "PIPELINE_BATCH_JOB_DEFINITION": JOB_DEFINITION,
        "PIPELINE_ESTIMATOR_LOG_GROUP": LOG_GROUP,
        # spot_first is false unless an environment's tfvars turn it on (none does)
        "PIPELINE_ECS_SPOT": "never",
        "PIPELINE_BATCH_SPOT": "never",
        "PIPELINE_BATCH_SPOT_JOB_QUEUE": f"{QUEUE}-spot",
        # docker/entrypoint.py writes it to a file; the stand-in takes anonymous clients
        "GOOGLE_APPLICATION_CREDENTIALS_JSON": None,
        "PIPELINE_RESPONDENT_KEY": RESPONDENT_KEY,
        **dd,
        **region,
    }
    keys = worker_env_keys()
    missing = [k for k in keys if k not in values]
    assert not missing, f"the worker task definition sets {missing}: give the rehearsal values"
    worker_env = {
        **base_env(),
        **aws_env(moto),
        **{k: v for k in keys if (v := values[k]) is not None},
        "PIPELINE_HOME": str(tmp / "worker-home"),
        "PIPELINE_BIGQUERY_ENDPOINT": bq.url,
    }
    worker_env["PATH"] = os.pathsep.join([str(image_bin(tmp / "image-bin")), worker_env["PATH"]])
    laptop_env = {
        **base_env(),
        **aws_env(moto),
        "PIPELINE_HOME": str(tmp / "laptop-home"),
        "PIPELINE_STORAGE_ROOT": storage_url(),
        "PIPELINE_WAREHOUSE": values["PIPELINE_WAREHOUSE"] or "",
        "PIPELINE_BIGQUERY_ENDPOINT": bq.url,
    }
    container = {**base_env(), **aws_env(moto), **region, "PIPELINE_HOME": str(tmp / "container")}
    agent = ConcurrentAgent(moto, container, tmp / "agent-logs").__enter__()
    day = Day(
        tmp=tmp, moto=moto, cloud=cloud, luigid=luigid, agent=agent, bq=bq, statsd=statsd,
        codes=codes, failing=failing, champion=champion, challenger=challenger,
        worker_cfg=worker_cfg, worker_env=worker_env, laptop_env=laptop_env,
    )  # fmt: skip
    day.notes["httpserver"] = server
    try:
        luigid.start()
    except BaseException:
        day.close()
        server.stop()
        raise
    return day
