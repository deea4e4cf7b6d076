"""``pipeline rerun``: invalidate one step (and what follows it) for one cohort, run again.

Outputs are removed downstream first (ingest markers, then checks, then model results,
then cleansing with its summary first), one target at a time, so an interrupted rerun
never leaves a "done" step on top of a removed input: at any point, what remains is
consistent and `pipeline run` or another `pipeline rerun` picks up from there. Raw data
and the program runs' attempt directories (history, loaded into ``pipeline_runs``) are
never touched.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline import config, storage
from pipeline.cli import run as run_cli
from pipeline.core.spec import load_spec
from pipeline.errors import ConfigError, InputError
from pipeline.tasks.base import program_path
from pipeline.tasks.cleanse import known_cohorts

STEPS = ("cleanse", "model", "validate", "ingest")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "rerun",
        help="re-run one cohort from a step (removing that step's outputs and downstream)",
        description="List the outputs that re-running from STEP invalidates (that step's "
        "and every later step's, for the given cohort only; --from cleanse: the whole run "
        "date, including its raw-file pin, which is how new raw files are taken on purpose), "
        "ask for confirmation, remove them and run again. Raw data is never touched.",
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
    if args.raw:
        config.set_override("pipeline", "raw", str(args.raw))
    iso = args.run_date.isoformat()
    if args.step == "cleanse" and args.cohort:
        raise ConfigError(
            "--from cleanse re-cleanses the whole run date, so every cohort runs again: "
            "drop --cohort (or re-run one cohort from model, validate or ingest)"
        )
    if args.step != "cleanse":
        if not args.cohort:
            raise ConfigError(
                f"--from {args.step} needs --cohort CODE (the cohort to re-run); "
                "--from cleanse re-runs the whole date"
            )
        known = list(known_cohorts(iso)["code"])
        unknown = [c for c in args.cohort if c not in known]
        if unknown:
            raise InputError(
                f"unknown --cohort {', '.join(unknown)} (known: {', '.join(known)})",
                file=str(config.raw_dir() / "cohorts.csv"),
            )
    uris = invalidated(iso, args.step, args.cohort, program_path(args.program or ""))
    root = storage.join(config.storage_root(), iso)
    who = "every cohort" if args.step == "cleanse" else ", ".join(args.cohort)
    if uris:
        print(f"Re-running {iso} from {args.step} for {who} invalidates {len(uris)} output(s):")
        for uri in uris:
            print(f"  {uri.removeprefix(root + '/')}")
        print(f"  (under {root})")
    else:
        print(f"Nothing to invalidate for {iso} from {args.step} ({who}): not run yet.")
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
    remove(uris)
    args.cohort = [] if args.step == "cleanse" else args.cohort
    return run_cli.main(args)


def invalidated(iso: str, step: str, cohorts: list[str], program: str) -> list[str]:
    """The outputs re-running ``iso`` from ``step`` removes, in removal order."""
    root = storage.join(config.storage_root(), iso)
    if step == "cleanse":
        files = [u for u in storage.listdir(root) if "/attempts/" not in u]
        order = {"ingest": 0, "validate": 1, "model": 2, "cleanse": 3}

        def rank(uri: str) -> tuple[int, int, str]:
            top = uri.removeprefix(root + "/").split("/", 1)[0]
            # Within cleansing the summary goes first: it is written last.
            return (order.get(top, 4), 0 if uri.endswith("/summary.json") else 1, uri)

        return sorted((u for u in files if u.removeprefix(root + "/").split("/")[0] in order),
                      key=rank)  # fmt: skip
    slug = load_spec(program).slug
    uris: list[str] = []
    for cohort in cohorts:
        uris += storage.listdir(storage.join(root, "ingest", cohort, slug))
        if step in ("model", "validate"):
            uris.append(storage.join(root, "validate", cohort, slug, "checks.parquet"))
        if step == "model":
            uris += [storage.join(root, "model", cohort, slug, name)
                     for name in ("run.json", "results.parquet")]  # fmt: skip
    return [u for u in uris if storage.exists(u)]


def remove(uris: list[str]) -> None:
    """Remove each target on its own (a file delete / object delete is atomic)."""
    raw = config.raw_dir().resolve()
    for uri in uris:
        if not storage.is_s3(uri) and Path(uri).resolve().is_relative_to(raw):
            raise ConfigError(f"refusing to remove {uri}: it is under the raw directory {raw}")
    for uri in uris:
        storage.remove(uri)
