"""``pipeline assist``: the always-on worker beside luigid (luigi's assistant mode).

luigid's "Forgive failures" button turns a FAILED task back to PENDING, but the run that
scheduled it has ended: nobody would run it. The assistant asks luigid for work every
``[assistant] poll_interval`` seconds and runs whatever of this pipeline luigid hands it:
the forgiven task, then the tasks downstream of it (same task ids, so no second delivery
appears in luigid), on the executor the task names, in threads of this process
(``pipeline.worker``: executor slots, leases, the date's run lock). A task of any other
module is failed in luigid with the reason, never imported. SIGTERM/SIGINT stop its
programs and cloud tasks as they stop those of ``pipeline run``.
"""

from __future__ import annotations

import argparse
import socket
import sys
import time
from urllib.parse import urlparse

from pipeline import config


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "assist",
        help="run the always-on worker that runs what is forgiven in luigid's UI",
        description="Run luigi's assistant against luigid: an always-on worker that runs "
        "any runnable task of this pipeline luigid has, e.g. a step forgiven with luigid's "
        '"Forgive failures" button after its run ended, and the steps after it. Production '
        "runs it as an ECS service beside luigid (terraform/modules/luigid); `make "
        "assistant` runs one on a laptop. docs/operations.md says what to click and what "
        "to type. Runs until SIGTERM/SIGINT, which stop its programs and cloud tasks.",
    )
    parser.add_argument(
        "--scheduler-url",
        help="luigid to assist, e.g. http://localhost:8082 (default: luigi.cfg [core])",
    )
    parser.add_argument(
        "--workers",
        type=int,
        help="tasks that work at once, each in a thread (default: [assistant] workers); "
        "program runs only wait and take none, as in `pipeline run`",
    )
    parser.add_argument(
        "--poll-interval",
        type=float,
        help="seconds between two requests for work while idle (default: [assistant] "
        "poll_interval): a forgiven task starts within it",
    )
    parser.set_defaults(func=main)


def settings(args: argparse.Namespace) -> tuple[str, int, float]:
    from pipeline.cli.run import scheduler_url
    from pipeline.errors import ConfigError

    workers = args.workers or int(config.get_float("assistant", "workers", 4))
    poll = args.poll_interval or config.get_float("assistant", "poll_interval", 10.0)
    if workers < 1:
        raise ConfigError("--workers must be at least 1")
    if poll <= 0:
        raise ConfigError("--poll-interval must be positive")
    return scheduler_url(args), workers, poll


def wait_for_luigid(url: str, poll: float) -> None:
    """luigid and the assistant start together (an ECS deploy): wait until it answers."""
    parsed = urlparse(url)
    host, port = parsed.hostname or "localhost", parsed.port or 8082
    said = 0.0
    while True:
        try:
            socket.create_connection((host, port), timeout=3).close()
            return
        except OSError:
            if time.monotonic() - said > 60:
                print(f"pipeline assist: waiting for luigid at {url}", file=sys.stderr)
                said = time.monotonic()
            time.sleep(min(poll, 5.0))


def main(args: argparse.Namespace) -> int:
    import luigi

    from pipeline.worker import WorkerSchedulerFactory, interrupted_by_sigterm

    url, workers, poll = settings(args)
    with interrupted_by_sigterm():
        wait_for_luigid(url, poll)
        print(
            f"pipeline assist: assisting {url} ({workers} worker thread(s), asking for work "
            f"every {poll:g}s when idle); SIGTERM/SIGINT stops it",
            file=sys.stderr,
            flush=True,
        )
        factory = WorkerSchedulerFactory(
            keep_alive=True,  # an assistant: never exits on its own
            wait_interval=poll,
            wait_jitter=0.0,
            ping_interval=min(poll, 10.0),
        )
        ok = luigi.build(
            [], worker_scheduler_factory=factory, assistant=True, scheduler_url=url, workers=workers
        )
    return 0 if ok else 1
