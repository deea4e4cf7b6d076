"""``pipeline reap``: stop the cloud tasks whose worker is gone or whose deadline passed."""

from __future__ import annotations

import argparse
import sys

from pipeline import config, metrics
from pipeline.executors.reaper import Reaped, reap_from_config


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "reap",
        help="stop cloud tasks left behind by dead workers",
        description="Stop every pipeline-tagged ECS task ([ecs] cluster) and Batch job "
        "([batch] job_queue) whose owning worker's lease has expired ([reaper] lease_ttl) "
        "or whose deadline has passed. Prints one line per task with the reason. Safe to "
        "run at any time: tasks of live runs (fresh leases) are never touched. Exits 0 "
        "when done, 1 when a listing, lease check or stop failed.",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="print what would be stopped, stop nothing"
    )
    parser.add_argument(
        "--executor",
        action="append",
        choices=("ecs", "batch"),
        help="look only at this executor's tasks (repeatable; default: [reaper] executors, "
        "else both)",
    )
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    def show(item: Reaped) -> None:
        print(item.line(), flush=True)

    report = reap_from_config(dry_run=args.dry_run, executors=args.executor, on_reaped=show)
    for error in report.errors:
        print(f"pipeline reap: error: {error}", file=sys.stderr)
    stopped = sum(1 for r in report.reaped if r.stopped)
    metrics.record_reaped(r.executor for r in report.reaped if r.stopped)
    verb = "would stop" if args.dry_run else "stopped"
    count = len(report.reaped) if args.dry_run else stopped
    print(
        f"reaper: {verb} {count}, kept {report.kept} with fresh leases "
        f"(leases under {config.storage_root()})"
    )
    return 1 if report.errors else 0
