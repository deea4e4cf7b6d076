"""``pipeline rerun``: invalidate one step (and what follows it) for one cohort, run again.

Everything that can be checked is checked before anything is removed (the specs, the
raw files' pin, the cohorts, the scheduler). Outputs are then removed downstream first
(ingest markers, then checks, then model results, then cleansing with its summary
first), one target at a time, so an interrupted rerun never leaves a "done" step on top
of a removed input: at any point, what remains is consistent and `pipeline run` or
another `pipeline rerun` picks up from there. Raw data, logs and the program runs'
attempt directories (history, loaded into ``pipeline_runs``) are never touched.

A run date may have run several program variants (docs/variants.md): the rerun takes
every variant that ran for the cohort(s) (for the whole date with ``--from cleanse``),
as the timing records of its RunModel tasks say, unless ``--program`` (or ``--param``)
names the ones to re-run; the other variants' outputs and attempts stay as they are.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

import luigi.task

from pipeline import storage
from pipeline.cli import run as run_cli
from pipeline.errors import ConfigError, SpecError
from pipeline.executors import attempts
from pipeline.layout import Layout
from pipeline.steps import BY_NAME, RERUN_FROM, step_of
from pipeline.tasks import Deliver, IngestResults, upstream
from pipeline.tasks.params import canonical_program, load_program


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "rerun",
        help="re-run one cohort from a step (removing that step's outputs and downstream)",
        description="List the outputs that re-running from STEP invalidates (that step's "
        "and every later step's, for the given cohort only; --from cleanse: the whole run "
        "date, including its raw-file pin, which is how new raw files are taken on purpose), "
        "of every program variant the date ran unless --program chooses, "
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
    parser.add_argument("--from", dest="step", required=True, choices=RERUN_FROM, help="first step")
    parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    parser.add_argument("--dry-run", action="store_true", help="only list what would be removed")
    run_cli.add_run_options(parser)
    # What --program (added by add_run_options) means here.
    parser._option_string_actions["--program"].help = (
        "re-run only this program variant (repeatable; SPEC?NAME=VALUE for param overrides). "
        "Default: every variant the run date ran for the cohort(s)"
    )
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    _check_arguments(args)
    deliver = _delivery(args)
    if not args.local_scheduler and not args.dry_run:
        run_cli.check_scheduler(run_cli.scheduler_url(args))
    uris = invalidated(deliver, args.step, args.cohort)
    _show(deliver, args, uris)
    if args.dry_run:
        return 0
    if uris and not args.yes and not _confirmed(len(uris)):
        print("Nothing removed.")
        return 1
    remove(uris, deliver.raw)
    if args.step in ("model", "cleanse"):
        _supersede_attempts(deliver, args.step, args.cohort)
    args.cohort = [] if args.step == "cleanse" else args.cohort
    return run_cli.main(args)


def _check_arguments(args: argparse.Namespace) -> None:
    """--from cleanse is the whole date; any other step needs the cohorts to re-run."""
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


def _delivery(args: argparse.Namespace) -> Deliver:
    """The delivery to run again, with every spec loaded before anything is removed: the
    variants named, else every variant the date ran for these cohorts (for the whole date
    when none ran for them, e.g. the data-quality gate stopped them)."""
    ran: list[str] = []
    if not args.program and not args.param:
        layout = Layout.of(args.run_date)
        ran = programs_ran(layout, args.cohort or None) or programs_ran(layout, None)
        args.program = ran or None
    try:
        if args.step != "cleanse":
            return run_cli.build_delivery(args)
        # New raw files are the point of re-cleansing: the pin is checked after removal.
        deliver = Deliver(
            run_date=args.run_date,
            programs=run_cli.programs_of(args),
            executor=args.executor or "",
            warehouse=args.warehouse or "",
            raw=args.raw or "",
        )
        for program in deliver.programs:
            load_program(program)  # a spec that no longer loads: before anything goes
        return deliver
    except SpecError as exc:
        if not ran:
            raise
        raise SpecError(
            f"{exc}, yet {args.run_date} ran it"
            + (f" for {', '.join(args.cohort)}" if args.cohort else "")
            + ": name the variants to re-run with --program"
        ) from None


def _show(deliver: Deliver, args: argparse.Namespace, uris: list[str]) -> None:
    """The variants to re-run and the outputs that go."""
    root = deliver.layout.base
    who = "every cohort" if args.step == "cleanse" else ", ".join(args.cohort)
    if len(deliver.programs) > 1:
        who += f" ({len(deliver.programs)} variants)"
    if len(deliver.programs) > 1 or deliver.programs != (canonical_program(""),):
        print(f"Program variant(s) of {deliver.run_date} to re-run:")
        for program in deliver.programs:
            print(f"  {load_program(program).slug}  {program}")
    if not uris:
        print(f"Nothing to invalidate from {args.step} ({who}): not run yet.")
        return
    print(f"Re-running {root.rsplit('/', 1)[-1]} from {args.step} for {who} invalidates "
          f"{len(uris)} output(s):")  # fmt: skip
    for uri in uris:
        print(f"  {uri.removeprefix(root + '/')}")
    print(f"  (under {root})")


def _confirmed(count: int) -> bool:
    if not sys.stdin.isatty():
        raise ConfigError(
            f"not removing {count} output(s) without confirmation: no terminal to ask on; "
            "pass --yes"
        )
    answer = input(f"Remove these {count} output(s) and run again? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def _supersede_attempts(deliver: Deliver, step: str, cohorts: list[str]) -> None:
    """Re-running a step means running its programs again: earlier attempts must not be
    adopted as finished work (see RunModel), they are history now."""
    when = datetime.now(UTC).isoformat(timespec="seconds")
    why = f"superseded: pipeline rerun --from {step} at {when}"
    if step == "cleanse":  # every cohort's model outputs are gone
        attempts.supersede(deliver.layout, None, why)
        return
    for program in deliver.programs:  # only the variants re-run: the others keep theirs
        spec = load_program(program)
        for cohort in cohorts:
            attempts.abandon(deliver.layout, cohort, spec, superseded=True, why=why)


def programs_ran(layout: Layout, cohorts: list[str] | None) -> list[str]:
    """The programs (canonical, variants included) whose RunModel tasks ran for the run
    date, of ``cohorts`` only unless None, from the tasks' timing records; the
    configured one first."""
    seen = set()
    for uri in storage.listdir(layout.timings()):
        if not (uri.rsplit("/", 1)[-1].startswith("RunModel_") and uri.endswith(".json")):
            continue
        try:
            record = storage.read_json(uri)
        except (OSError, ValueError):
            continue
        params = record.get("params") or {}
        if record.get("task_family") != "RunModel" or not params.get("program"):
            continue
        if cohorts is None or params.get("cohort") in cohorts:
            seen.add(str(params["program"]))
    champion = canonical_program("")
    return sorted(seen, key=lambda p: (p != champion, p))


def invalidated(deliver: Deliver, step: str, cohorts: list[str]) -> list[str]:
    """The outputs re-running from ``step`` removes, in removal order (downstream first).
    From cleansing: every file the date's steps wrote. Else, for each cohort's results
    ingest, the tasks of the graph that need the cohort's ``step`` task, and their outputs
    (every warehouse's marker of the cohort's variant: a load into any of them is stale)."""
    if step == "cleanse":
        return deliver.layout.written()
    uris: list[str] = []
    for end in deliver.ends(cohorts)[1:]:  # after the survey ingest: the results ingests
        chain = upstream(end)
        (first,) = (t for t in chain if step_of(t.task_family) == BY_NAME[step])
        for task in chain:
            if first not in upstream(task):
                continue
            if isinstance(task, IngestResults):
                uris += storage.listdir(task.layout.results_markers(task.cohort, task.spec.slug))
            else:
                uris += [target.path for target in luigi.task.flatten(task.output())]
    return [u for u in uris if storage.exists(u)]


def remove(uris: list[str], raw: str) -> None:
    """Remove each target on its own (a file delete / object delete is atomic)."""
    raw_dir = Path(raw).resolve()
    for uri in uris:
        if not storage.is_s3(uri) and Path(uri).resolve().is_relative_to(raw_dir):
            raise ConfigError(f"refusing to remove {uri}: it is under the raw directory {raw_dir}")
    for uri in uris:
        storage.remove(uri)
