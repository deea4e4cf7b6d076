"""``pipeline regress``: run a program spec's golden cases and compare with the expected
results (docs/quality.md)."""

from __future__ import annotations

import argparse
import json
import os

from pipeline import config
from pipeline.cli.run import absolute_path
from pipeline.core.regress import format_diff
from pipeline.errors import SpecError
from pipeline.executors import EXECUTORS
from pipeline.regress import record, run_case
from pipeline.tasks.params import canonical_program, load_program

EXIT_PASSED, EXIT_FAILED = 0, 1


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "regress",
        help="run a program's golden cases and compare with the expected results",
        description="Run every [[golden]] case of a program spec through the wrapper on the "
        "chosen executor, print a per-treatment diff table and record the outcome in "
        "<storage root>/regress/<name-version-fingerprint>/result.json, where "
        "`pipeline approve` looks for it. Exit codes: 0 every case within tolerance; 1 a "
        "case out of tolerance or its program failed; 2 the spec has no golden case or is "
        "invalid, or a case file is missing.",
    )
    parser.add_argument(
        "--program",
        required=True,
        metavar="SPEC",
        help="program spec TOML (or SPEC?NAME=VALUE for a variant's param overrides)",
    )
    parser.add_argument(
        "--root",
        metavar="ROOT",
        help="the storage root to run the cases under and record the result in: the one "
        "`pipeline approve` reads, e.g. production's s3://BUCKET/work (default: "
        "PIPELINE_STORAGE_ROOT, else [storage] root, else $PIPELINE_HOME/work)",
    )
    parser.add_argument(
        "--executor",
        choices=EXECUTORS,
        help="where the program runs (default: [pipeline] executor); ecs and batch need "
        "an s3:// storage root",
    )
    parser.add_argument(
        "--case", action="append", default=[], metavar="NAME", help="run only this case"
    )
    parser.add_argument(
        "--all-rows", action="store_true", help="print every compared value, not only failures"
    )
    parser.add_argument("--json", action="store_true", help="print the recorded result as JSON")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    if args.root:
        # For the whole command, as PIPELINE_STORAGE_ROOT: the cloud executors keep their
        # leases under the storage root too.
        os.environ["PIPELINE_STORAGE_ROOT"] = args.root
    spec = load_program(canonical_program(absolute_path(args.program)))
    executor = args.executor or config.executor_name()
    if executor != "local":
        from pipeline.executors.cloud import require_s3_root

        require_s3_root(executor)
    cases = [c for c in spec.golden if not args.case or c.name in args.case]
    if not cases:
        wanted = f" named {', '.join(args.case)}" if args.case else ""
        raise SpecError(
            f"{spec.source}: no golden case{wanted}: add a [[golden]] table "
            "(name, cohort, input, frame, expected; docs/quality.md)"
        )
    root = config.storage_root()
    results = []
    for case in cases:
        if not args.json:
            print(f"golden case {case.name!r}: {spec.name} {spec.version} on {executor} ...")
        result = run_case(spec, case, executor, root)
        results.append(result)
        if args.json:
            continue
        if result.error:
            print(f"  FAIL: the program did not produce results: {result.error}")
            continue
        failed = int((~result.diff["ok"]).sum())
        print(
            f"  {'ok' if result.passed else 'FAIL'}: {len(result.diff) - failed} of "
            f"{len(result.diff)} values within tolerance"
        )
        if failed or args.all_rows:
            print(format_diff(result.diff, only_failed=not args.all_rows))
    uri = record(spec, executor, root, results)
    passed = all(r.passed for r in results)
    if args.json:
        from pipeline import storage

        print(json.dumps(storage.read_json(uri), indent=2, ensure_ascii=False))
    else:
        print(
            f"{spec.slug}: {sum(r.passed for r in results)} of {len(results)} golden case(s) "
            f"passed; recorded in {uri}"
        )
    return EXIT_PASSED if passed else EXIT_FAILED
