"""``pipeline rerun``: invalidate one step (and what follows it) for one cohort, run again.

Everything that can be checked is checked before anything is removed (the specs, the
raw files' pin, the cohorts, the scheduler). Outputs are then removed downstream first
(ingest markers, then checks, then model results, then cleansing with its summary
first), one target at a time, so an interrupted rerun never leaves a "done" step on top
of a removed input: at any point, what remains is consistent and `pipeline run` or
another `pipeline rerun` picks up from there. Raw data, logs and the program runs'
attempt directories (history, loaded into ``pipeline_runs``) are never touched.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from pipeline import storage
from pipeline.cli import run as run_cli
from pipeline.errors import ConfigError
from pipeline.executors import attempts
from pipeline.tasks import Deliver, IngestResults, RunModel, ValidateResults

STEPS = ("cleanse", "model", "validate", "ingest")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "rerun",
        help="re-run one cohort from a step (removing that step's outputs and downstream)",
        description="List the outputs that re-running from STEP invalidates (that step's "
        "and every later step's, for the given cohort only; --from cleanse: the whole run "
        "date, including its raw-file pin, which is how new raw files are taken on purpose), "
        "ask for confirmation, remove them and run again. Raw data is never touched; "
        "nothing is removed when the run could not start (bad spec, unknown cohort, no "
        "luigid).",
    )
    parser.add_argument("--run-date", required=True, type=run_cli.run_date, help="YYYY-MM-DD")
    parser.add_argument(
        "--cohort",
        action="append",
        default=[],
        metavar="CODE",
        help="the cohort to re-run (repeatable); not with --from cleanse",
    )
    parser.add_argument("--from", dest="step", required=True, choices=STEPS, help="first step")
    parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    parser.add_argument("--dry-run", action="store_true", help="only list what would be removed")
    run_cli.add_run_options(parser)
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    if args.step == "cleanse" and args.cohort:
        raise ConfigError(
            "--from cleanse re-cleanses the whole run date, so every cohort runs again: "
            "drop --cohort (or re-run one cohort from model, validate or ingest)"
        )
    if args.step != "cleanse" and not args.cohort:
        raise ConfigError(
            f"--from {args.step} needs --cohort CODE (the cohort to re-run); "
            "--from cleanse re-runs the whole date"
        )
    if args.step == "cleanse":
        # New raw files are the point of re-cleansing: the pin is checked after removal.
        deliver = Deliver(
            run_date=args.run_date,
            programs=run_cli.programs_of(args),
            executor=args.executor or "",
            warehouse=args.warehouse or "",
            raw=args.raw or "",
        )
    else:
        deliver = run_cli.build_delivery(args)
    if not args.local_scheduler and not args.dry_run:
        run_cli.check_scheduler(run_cli.scheduler_url(args))
    uris = invalidated(deliver, args.step, args.cohort)
    root = deliver.layout.base
    who = "every cohort" if args.step == "cleanse" else ", ".join(args.cohort)
    if uris:
        print(f"Re-running {root.rsplit('/', 1)[-1]} from {args.step} for {who} invalidates "
              f"{len(uris)} output(s):")  # fmt: skip
        for uri in uris:
            print(f"  {uri.removeprefix(root + '/')}")
        print(f"  (under {root})")
    else:
        print(f"Nothing to invalidate from {args.step} ({who}): not run yet.")
    if args.dry_run:
        return 0
    if uris and not args.yes:
        if not sys.stdin.isatty():
            raise ConfigError(
                f"not removing {len(uris)} output(s) without confirmation: no terminal to ask "
                "on; pass --yes"
            )
        answer = input(f"Remove these {len(uris)} output(s) and run again? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("Nothing removed.")
            return 1
    remove(uris, deliver.raw)
    if args.step in ("model", "cleanse"):
        # Re-running a step means running its programs again: earlier attempts must not
        # be adopted as finished work (see RunModel), they are history now.
        attempts.supersede(
            deliver.layout,
            None if args.step == "cleanse" else list(args.cohort),
            f"superseded: pipeline rerun --from {args.step} at "
            f"{datetime.now(UTC).isoformat(timespec='seconds')}",
        )
    args.cohort = [] if args.step == "cleanse" else args.cohort
    return run_cli.main(args)


def invalidated(deliver: Deliver, step: str, cohorts: list[str]) -> list[str]:
    """The outputs re-running from ``step`` removes, in removal order (the tasks say which
    outputs they have; every warehouse's marker of a cohort goes)."""
    layout = deliver.layout
    if step == "cleanse":
        order = {"ingest": 0, "validate": 1, "model": 2, "quality": 3, "cleanse": 4}
        base = layout.base

        def top(uri: str) -> str:
            return uri.removeprefix(base + "/").split("/", 1)[0]

        def rank(uri: str) -> tuple[int, int, str]:
            # Within cleansing the summary goes first: it is written last.
            return (order[top(uri)], 0 if uri.endswith("/summary.json") else 1, uri)

        files = [u for u in storage.listdir(base) if top(u) in order and "/attempts/" not in u]
        return sorted(files, key=rank)
    uris: list[str] = []
    for program in deliver.programs:
        for cohort in cohorts:
            common = {"run_date": deliver.run_date, "cohort": cohort, "program": program}
            marker = IngestResults(**common, warehouse=deliver.warehouse).output().path
            uris += storage.listdir(marker.rsplit("/", 1)[0])
            if step in ("model", "validate"):
                uris.append(ValidateResults(**common).output().path)
            if step == "model":
                outputs = RunModel(**common).output()
                uris += [outputs["run"].path, outputs["results"].path]
    return [u for u in uris if storage.exists(u)]


def remove(uris: list[str], raw: str) -> None:
    """Remove each target on its own (a file delete / object delete is atomic)."""
    raw_dir = Path(raw).resolve()
    for uri in uris:
        if not storage.is_s3(uri) and Path(uri).resolve().is_relative_to(raw_dir):
            raise ConfigError(f"refusing to remove {uri}: it is under the raw directory {raw_dir}")
    for uri in uris:
        storage.remove(uri)
