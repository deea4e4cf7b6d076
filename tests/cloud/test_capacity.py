"""ECS RunTask that finds no capacity is tried again with backoff until the cohort's
deadline; any other RunTask failure fails the cohort at once.

moto never answers RunTask with ``failures`` (it returns no task and no reason), so a tiny
HTTP layer on loopback sits between the executor's ECS client and the moto server: it
answers the RunTask calls a test scripts (capacity failures, errors) and passes every other
request — and the RunTask calls past the script — to moto, which then starts a real task.
Leases, DescribeTasks and StopTask are moto's own."""

from __future__ import annotations

import http.client
import itertools
import json
import re
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import luigi.configuration
import pytest

from pipeline import storage
from pipeline.errors import ConfigError
from pipeline.executors import Events, aws, base
from pipeline.executors.base import Interrupted
from pipeline.executors.cloud import CloudError
from pipeline.executors.ecs import EcsExecutor, EcsSettings, placement_failure
from pipeline.layout import LEASE_DIR
from tests.cloud.conftest import CLUSTER, REGION, Cloud
from tests.cloud.helpers import ECS_SETTINGS, in_background, make_job, wait_for

INSTANCE = f"arn:aws:ecs:{REGION}:123456789012:container-instance/{CLUSTER}/0123abcd"
FARGATE_NO_CAPACITY = (
    "Capacity is unavailable at this time. Please try again later or in a different "
    "availability zone"
)
JSON = "application/x-amz-json-1.1"


def failure(reason: str, detail: str = "") -> dict[str, Any]:
    """A RunTask answer that started no task, with one failure."""
    entry = {"arn": INSTANCE, "reason": reason, **({"detail": detail} if detail else {})}
    return {"status": 200, "body": {"tasks": [], "failures": [entry]}}


def error(code: str, message: str, status: int = 400) -> dict[str, Any]:
    """A RunTask call refused with an AWS JSON-protocol error."""
    return {"status": status, "body": {"__type": code, "message": message}}


class RunTaskFront:
    """Loopback HTTP in front of moto: the next scripted answer for each RunTask call while
    the script lasts; everything else goes to moto unchanged."""

    def __init__(self, upstream: str, script: Iterator[dict[str, Any]]) -> None:
        self.upstream = urlsplit(upstream)
        self.script = script
        self.run_tasks: list[dict[str, Any]] = []  # every RunTask request, in order
        self.lock = threading.Lock()
        front = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:
                pass

            def do_POST(self) -> None:
                front.handle(self)

            def do_GET(self) -> None:
                front.handle(self)

            def do_PUT(self) -> None:
                front.handle(self)

            def do_DELETE(self) -> None:
                front.handle(self)

            def do_HEAD(self) -> None:
                front.handle(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> RunTaskFront:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        body = request.rfile.read(int(request.headers.get("Content-Length") or 0))
        if request.headers.get("X-Amz-Target", "").endswith(".RunTask"):
            with self.lock:
                self.run_tasks.append(json.loads(body))
                answer = next(self.script, None)
            if answer is not None:
                payload = json.dumps(answer["body"]).encode()
                request.send_response(answer["status"])
                request.send_header("Content-Type", JSON)
                request.send_header("Content-Length", str(len(payload)))
                request.end_headers()
                request.wfile.write(payload)
                return
        conn = http.client.HTTPConnection(self.upstream.hostname, self.upstream.port, timeout=30)
        try:
            headers = {k: v for k, v in request.headers.items() if k.lower() != "connection"}
            conn.request(request.command, request.path, body=body, headers=headers)
            response = conn.getresponse()
            payload = response.read()
        finally:
            conn.close()
        request.send_response(response.status)
        for key, value in response.getheaders():
            if key.lower() not in ("content-length", "transfer-encoding", "connection", "date",
                                   "server"):  # fmt: skip
                request.send_header(key, value)
        request.send_header("Content-Length", str(len(payload)))
        request.end_headers()
        if request.command != "HEAD":
            request.wfile.write(payload)


def executor_behind(front: RunTaskFront, **settings: Any) -> EcsExecutor:
    """An ECS executor whose ECS calls go through ``front`` (logs, S3: moto directly)."""
    client = boto3.session.Session().client(
        "ecs", region_name=REGION, endpoint_url=front.url, config=aws.client_config()
    )
    return EcsExecutor(replace(ECS_SETTINGS, **settings), client=client)


def all_tasks(cloud: Cloud) -> list[str]:
    return [
        arn
        for status in ("RUNNING", "STOPPED")
        for arn in cloud.ecs.list_tasks(cluster=CLUSTER, desiredStatus=status)["taskArns"]
    ]


def waits(statuses: list[str]) -> list[str]:
    return [s for s in statuses if "waiting for ECS capacity" in s]


def test_capacity_failures_are_retried_then_the_task_runs_once(
    cloud: Cloud, tmp_path: Path
) -> None:
    script = iter([failure("RESOURCE:CPU"), failure("RESOURCE:CPU")])
    statuses: list[str] = []
    job = make_job(tmp_path)

    def container_finishes() -> None:
        task = wait_for(lambda: cloud.running_tasks(), what="the task")[0]
        cloud.ecs.stop_task(cluster=CLUSTER, task=task["taskArn"],
                            reason="Essential container exited")  # fmt: skip

    with RunTaskFront(cloud.url, script) as front:
        executor = executor_behind(front, capacity_retry_initial=0.05, capacity_retry_max=0.1)
        in_background(container_finishes)
        record = executor.run(job, Events(status=statuses.append))

    assert record.exit_code == 0 and record.error == ""
    assert all_tasks(cloud) == [record.job_id]  # the cohort ran once
    assert len(front.run_tasks) == 3
    first, second, third = front.run_tasks
    # A new idempotency token after each answer that placed nothing (ECS would repeat a
    # token's first answer); the same request otherwise, deadline tag included.
    assert len({r["clientToken"] for r in front.run_tasks}) == 3
    assert first["overrides"] == second["overrides"] == third["overrides"]
    assert first["tags"] == second["tags"] == third["tags"]
    shown = waits(statuses)
    assert len(shown) == 2, statuses
    for retry, status in enumerate(shown, 1):
        assert re.fullmatch(
            rf"toy 1\.0 waiting for ECS capacity \(RESOURCE:CPU\) on cluster {CLUSTER}, "
            rf"retry {retry} in 0\.\d s, \d+s so far",
            status,
        ), status
    assert statuses.index(shown[-1]) < next(
        i for i, s in enumerate(statuses) if "submitted to ecs" in s
    )
    log = job.log_path.read_text()
    assert "no capacity (RESOURCE:CPU); retry 1" in log and "retry 2" in log
    assert storage.listdir(f"{cloud.root}/{LEASE_DIR}") == []


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (failure("MISSING"), "MISSING"),
        (failure("ATTRIBUTE", "placement constraint unmet"), "ATTRIBUTE"),
        (error("AccessDeniedException", "not authorized to perform: ecs:RunTask"),
         "AccessDeniedException: not authorized to perform: ecs:RunTask"),
        (error("ClientException", "TaskDefinition is inactive"), "TaskDefinition is inactive"),
    ],
    ids=["missing", "attribute-alone", "access-denied", "inactive-definition"],
)  # fmt: skip
def test_other_runtask_failures_fail_at_once(
    cloud: Cloud, tmp_path: Path, answer: dict[str, Any], reason: str
) -> None:
    statuses: list[str] = []
    with RunTaskFront(cloud.url, itertools.repeat(answer)) as front:
        executor = executor_behind(front, capacity_retry_initial=30, capacity_retry_max=60)
        started = time.monotonic()
        with pytest.raises(CloudError, match=re.escape(reason)) as failed:
            executor.run(make_job(tmp_path), Events(status=statuses.append))
    assert time.monotonic() - started < 10
    assert "cohort asthma on cluster survey-test" in str(failed.value)
    assert len(front.run_tasks) == 1  # no retry
    assert waits(statuses) == []
    assert all_tasks(cloud) == []
    assert storage.listdir(f"{cloud.root}/{LEASE_DIR}") == []


def test_no_capacity_until_the_deadline_fails_saying_how_long_it_waited(
    cloud: Cloud, tmp_path: Path
) -> None:
    statuses: list[str] = []
    job = make_job(tmp_path, timeout=1)
    with RunTaskFront(cloud.url, itertools.repeat(failure(FARGATE_NO_CAPACITY))) as front:
        executor = executor_behind(front, capacity_retry_initial=0.05, capacity_retry_max=0.2)
        executor.deadline_grace = 0.5  # deadline: 1.5 s after the first RunTask
        started = time.monotonic()
        with pytest.raises(CloudError) as failed:
            executor.run(job, Events(status=statuses.append))
    elapsed = time.monotonic() - started
    assert 1.2 < elapsed < 30  # the deadline, plus a loaded machine's slow calls
    message = str(failed.value)
    assert re.search(
        rf"ecs: no capacity for cohort asthma \(cluster {CLUSTER}\) within its deadline \S+: "
        rf"waited \d+s over {len(front.run_tasks)} calls; last reason: Capacity is unavailable",
        message,
    ), message
    assert len(front.run_tasks) >= 2  # tried again, however slow each call was
    assert len(waits(statuses)) == len(front.run_tasks) - 1  # every wait shown
    assert "(Capacity is unavailable at this time." in waits(statuses)[0]
    assert "within its deadline" in job.log_path.read_text()
    assert all_tasks(cloud) == []
    assert storage.listdir(f"{cloud.root}/{LEASE_DIR}") == []


def test_sigterm_ends_the_wait_at_once_and_leaves_no_task(cloud: Cloud, tmp_path: Path) -> None:
    """The main thread (luigi's own worker: one task per process) gets the signal while it
    waits 15-30 s before its next RunTask."""
    waiting = threading.Event()
    sent: list[float] = []

    def status(message: str) -> None:
        if "waiting for ECS capacity" in message:
            waiting.set()

    def interrupt_while_waiting() -> None:
        if waiting.wait(20):
            time.sleep(0.2)  # well inside the wait
            sent.append(time.monotonic())
            signal.raise_signal(signal.SIGTERM)

    with RunTaskFront(cloud.url, itertools.repeat(failure("RESOURCE:MEMORY"))) as front:
        executor = executor_behind(front, capacity_retry_initial=30, capacity_retry_max=60)
        in_background(interrupt_while_waiting)
        with pytest.raises(Interrupted, match="SIGTERM"):
            executor.run(make_job(tmp_path), Events(status=status))
    (signalled,) = sent
    assert time.monotonic() - signalled < 3  # not the 15-30 s wait
    assert len(front.run_tasks) == 1
    assert all_tasks(cloud) == []
    assert storage.listdir(f"{cloud.root}/{LEASE_DIR}") == []


def test_a_shutdown_request_ends_the_wait_of_a_thread(
    cloud: Cloud, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``pipeline run`` waits in threads: its main thread calls ``request_shutdown``."""
    # request_shutdown is once per process: this test's own flag, restored afterwards.
    monkeypatch.setattr(base, "_shutdown", threading.Event())
    monkeypatch.setattr(base, "_shutdown_reason", "")
    waiting = threading.Event()
    outcome: list[BaseException | None] = []

    def status(message: str) -> None:
        if "waiting for ECS capacity" in message:
            waiting.set()

    with RunTaskFront(cloud.url, itertools.repeat(failure("RESOURCE:ENI"))) as front:
        executor = executor_behind(front, capacity_retry_initial=30, capacity_retry_max=60)

        def run() -> None:
            try:
                executor.run(make_job(tmp_path), Events(status=status))
                outcome.append(None)
            except BaseException as exc:  # the test looks at it
                outcome.append(exc)

        thread = in_background(run)
        assert waiting.wait(20)
        asked = time.monotonic()
        base.request_shutdown("the worker was interrupted")
        thread.join(10)
        assert time.monotonic() - asked < 3  # not the 15-30 s wait
    (exc,) = outcome
    assert isinstance(exc, Interrupted) and "the worker was interrupted" in str(exc)
    assert len(front.run_tasks) == 1
    assert all_tasks(cloud) == []
    assert storage.listdir(f"{cloud.root}/{LEASE_DIR}") == []


def test_what_counts_as_no_capacity() -> None:
    for reason in ("RESOURCE:CPU", "RESOURCE:MEMORY", "RESOURCE:ENI", "RESOURCE:GPU", "AGENT",
                   FARGATE_NO_CAPACITY):  # fmt: skip
        assert placement_failure([{"reason": reason}]) == reason
    # one instance lacks memory, another fails a constraint: capacity may come
    both = [{"reason": "RESOURCE:MEMORY"}, {"reason": "ATTRIBUTE", "detail": "zone"}]
    assert placement_failure(both) == "RESOURCE:MEMORY; ATTRIBUTE (zone)"
    twice = [{"reason": "RESOURCE:CPU", "arn": "a"}, {"reason": "RESOURCE:CPU", "arn": "b"}]
    assert placement_failure(twice) == "RESOURCE:CPU"
    for fatal in ([], [{"reason": "MISSING"}], [{"reason": "ATTRIBUTE"}],
                  [{"reason": "RESOURCE:CPU"}, {"reason": "MISSING"}]):  # fmt: skip
        assert placement_failure(fatal) == ""


def test_capacity_retry_settings(cloud: Cloud) -> None:
    cfg = luigi.configuration.get_config()
    if not cfg.has_section("ecs"):
        cfg.add_section("ecs")
    assert (EcsSettings.from_config().capacity_retry_initial,
            EcsSettings.from_config().capacity_retry_max) == (5.0, 60.0)  # fmt: skip
    try:
        cfg.set("ecs", "capacity_retry_initial", "2")
        cfg.set("ecs", "capacity_retry_max", "30")
        settings = EcsSettings.from_config()
        cfg.set("ecs", "capacity_retry_initial", "0")
        with pytest.raises(ConfigError, match=r"\[ecs\] capacity_retry_initial = 0"):
            EcsSettings.from_config()
        cfg.set("ecs", "capacity_retry_initial", "90")
        with pytest.raises(ConfigError, match="capacity_retry_max = 30"):
            EcsSettings.from_config()
    finally:
        for option in ("capacity_retry_initial", "capacity_retry_max"):
            cfg.remove_option("ecs", option)
    assert (settings.capacity_retry_initial, settings.capacity_retry_max) == (2.0, 30.0)
    executor = EcsExecutor(settings, client=aws.ecs_client(), logs_client=object())
    for retry in range(1, 8):
        ceiling = min(30.0, 2.0 * 2 ** (retry - 1))
        assert ceiling / 2 <= executor.capacity_delay(retry) <= ceiling
