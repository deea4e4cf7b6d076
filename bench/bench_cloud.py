"""Cloud executors at scale, against a local `moto_server` (issue 3, "Figures"): 200 cohorts
as ECS tasks submitted by one worker process (200 threads calling `EcsExecutor.run`, the
way concurrent cohorts in one process share one client and one poller), then 200 orphaned
tasks — each left by a different dead worker, so 200 distinct missing leases — stopped by
`pipeline reap` run as a command.

Targets: polling at most one DescribeTasks call per task per 5 s (≤ 0.2 calls/task/s) with
the default `[ecs] poll_interval = 5` / `poll_max_interval = 30`, and well below that when
batched (≤ 0.02); submission ≥ 20 tasks/s (moto on this machine is the bottleneck); all
200 orphans stopped within 60 s of `pipeline reap` starting. `describes per task per
second` is what a cohort costs when it has its own worker process (`--workers` > 1: one
task per process, so no batching); `calls per task per second` is the batched rate.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
COHORTS = 200
POLL_WINDOW = 30.0  # seconds of steady-state polling measured
BUCKET, CLUSTER, TASK_DEFINITION, CONTAINER = "bench", "bench-cluster", "bench-task", "estimator"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _post(url: str, body: dict[str, Any]) -> None:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})  # fmt: skip
    urllib.request.urlopen(request, timeout=10).read()


def _start_moto(log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{url}/moto-api/config", timeout=2).read()
            return proc, url
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"moto_server did not start: {log.read_text()}") from None
            time.sleep(0.2)


def _setup(url: str) -> None:
    import boto3

    session = boto3.session.Session()
    session.client("s3").create_bucket(Bucket=BUCKET)
    ecs = session.client("ecs")
    ecs.create_cluster(clusterName=CLUSTER)
    ecs.register_task_definition(
        family=TASK_DEFINITION, networkMode="bridge", requiresCompatibilities=["EC2"],
        containerDefinitions=[{"name": CONTAINER, "image": "estimator:bench", "cpu": 0,
                               "memory": 16, "essential": True}],
    )  # fmt: skip
    instances = session.client("ec2").run_instances(
        ImageId="ami-12c6146b", MinCount=2, MaxCount=2, InstanceType="m5.24xlarge"
    )["Instances"]
    for instance in instances:
        ecs.register_container_instance(
            cluster=CLUSTER,
            instanceIdentityDocument=json.dumps({"instanceId": instance["InstanceId"]}),
        )
    # moto's tasks stay RUNNING until stopped, like long programs.
    hold = {"progression": "manual", "times": 10**9}
    _post(f"{url}/moto-api/state-manager/set-transition",
          {"model_name": "ecs::task", "transition": hold})  # fmt: skip


def run() -> dict[str, Any]:
    from pipeline.core.spec import spec_from_dict
    from pipeline.executors import Events, Job
    from pipeline.executors.cloud import task_tags
    from pipeline.executors.ecs import EcsExecutor, EcsSettings

    saved = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix="bench-cloud-") as tmp:
        proc, url = _start_moto(Path(tmp) / "moto.log")
        try:
            os.environ.update({
                "AWS_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": "bench",
                "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_EC2_METADATA_DISABLED": "true", "NO_PROXY": "127.0.0.1",
                "PIPELINE_STORAGE_ROOT": f"s3://{BUCKET}/work", "PIPELINE_HOME": tmp,
            })  # fmt: skip
            _setup(url)
            settings = EcsSettings(cluster=CLUSTER, task_definition=TASK_DEFINITION,
                                   container_name=CONTAINER, launch_type="EC2")  # fmt: skip
            executor = EcsExecutor(settings)
            submitted: list[float] = []
            describes: list[tuple[float, int]] = []
            events = executor.client.meta.events
            events.register(
                "after-call.ecs.RunTask", lambda **_: submitted.append(time.monotonic())
            )
            events.register(
                "provide-client-params.ecs.DescribeTasks",
                lambda params, **_: describes.append((time.monotonic(), len(params["tasks"]))),
            )
            spec = spec_from_dict({"name": "bench", "version": "1", "command": ["true"],
                                   "outputs": {"results": "r.csv"}, "timeout": 3600,
                                   "cpu": 4096, "memory": 16384})  # fmt: skip
            jobs = [
                Job(run_date="2026-11-22", cohort=f"c{i:03d}", spec=spec, attempt=f"a{i:03d}",
                    job_uri=f"s3://{BUCKET}/work/c{i:03d}/job.json",
                    output_uri=f"s3://{BUCKET}/work/c{i:03d}/out",
                    log_path=Path(tmp) / "logs" / f"c{i:03d}.log")
                for i in range(COHORTS)
            ]  # fmt: skip
            records: list[Any] = []
            threads = [
                threading.Thread(target=lambda j=j: records.append(executor.run(j, Events())))
                for j in jobs
            ]
            started = time.monotonic()
            for thread in threads:
                thread.start()
            while len(submitted) < COHORTS and time.monotonic() - started < 300:
                time.sleep(0.05)
            submit_seconds = submitted[-1] - started
            # Steady state: every task is running; count the polling over a window.
            window_start = time.monotonic()
            time.sleep(POLL_WINDOW)
            window = [
                (t, n) for t, n in describes if window_start <= t < window_start + POLL_WINDOW
            ]
            calls = len(window)
            task_describes = sum(n for _, n in window)

            ecs = executor.client
            arns = [a for page in ecs.get_paginator("list_tasks").paginate(
                cluster=CLUSTER, desiredStatus="RUNNING") for a in page["taskArns"]]  # fmt: skip
            for arn in arns:  # the containers end
                ecs.stop_task(cluster=CLUSTER, task=arn, reason="Essential container exited")
            for thread in threads:
                thread.join(timeout=120)
            finished_ok = sum(1 for r in records if r.exit_code == 0)

            # 200 orphans, each tagged with the lease of a different dead worker.
            for i, job in enumerate(jobs):
                tags = task_tags(job, lease_id=f"dead-worker-{i}", lease_root=f"s3://{BUCKET}/work",
                                 deadline=time.time() + 3600)  # fmt: skip
                params = executor.run_task_params(job, ["true"], {}, tags)
                ecs.run_task(**{**params, "clientToken": f"orphan-{i}"})
            config = Path(tmp) / "luigi.cfg"
            config.write_text(f"[ecs]\ncluster = {CLUSTER}\n[reaper]\nexecutors = ecs\n"
                              f"[storage]\nroot = s3://{BUCKET}/work\n")  # fmt: skip
            reap_started = time.monotonic()
            reaped = subprocess.run(
                [sys.executable, "-m", "pipeline.cli", "reap"], cwd=REPO, capture_output=True,
                text=True, env={**os.environ, "LUIGI_CONFIG_PATH": str(config)},
            )  # fmt: skip
            reap_seconds = time.monotonic() - reap_started
            left = [a for page in ecs.get_paginator("list_tasks").paginate(
                cluster=CLUSTER, desiredStatus="RUNNING") for a in page["taskArns"]]  # fmt: skip
            if reaped.returncode != 0 or left:
                raise RuntimeError(
                    f"reap failed ({len(left)} left):\n{reaped.stdout}\n{reaped.stderr}"
                )
            stopped = sum(1 for line in reaped.stdout.splitlines() if line.startswith("stopped"))
        finally:
            os.environ.clear()
            os.environ.update(saved)
            proc.terminate()
            proc.wait(timeout=20)
    per_task = calls / COHORTS / POLL_WINDOW
    describes_per_task = task_describes / COHORTS / POLL_WINDOW
    return {
        "cohorts": COHORTS,
        "submit_seconds": round(submit_seconds, 2),
        "submission_tasks_per_s": round(COHORTS / submit_seconds, 1),
        "poll_window_s": POLL_WINDOW,
        "describe_calls_in_window": calls,
        "describe_calls_per_task_per_s (batched)": round(per_task, 5),
        "task_describes_per_task_per_s (one process per cohort)": round(describes_per_task, 4),
        "seconds_between_looks_at_a_task": round(1 / describes_per_task, 1),
        "max_tasks_per_describe_call": max(n for _, n in describes),
        "runs_finished_exit_0": finished_ok,
        "orphans": COHORTS,
        "reap_seconds (command start to all stopped)": round(reap_seconds, 2),
        "orphans_stopped": stopped,
        "target_met (<= 0.2 describes/task/s, batched <= 0.02, >= 20 tasks/s, reap <= 60 s)":
            describes_per_task <= 0.2 and per_task <= 0.02 and COHORTS / submit_seconds >= 20
            and reap_seconds <= 60 and stopped == COHORTS,
    }  # fmt: skip


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
