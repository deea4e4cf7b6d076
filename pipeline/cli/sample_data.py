"""``pipeline sample-data``: write a realistic raw survey export."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.errors import UsageError
from pipeline.sampledata import generate

# Cohort codes named in the closing summary; the rest are counted.
SHOWN_COHORTS = 6


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "sample-data",
        help="write a realistic sample raw survey export",
        description="Write a realistic physician-survey export in the raw contract format "
        "(docs/contracts/raw-export.md): cohorts.csv, frame.csv and response files in UTF-8 "
        "(with BOM, CRLF) and CP932, with the anomalies real exports have. Deterministic for "
        "a given --seed. A directory that is not empty is refused unless --force.",
    )
    parser.add_argument("--out", required=True, type=Path, help="directory to write into")
    parser.add_argument("--cohorts", type=int, default=4, help="number of cohorts (default 4)")
    parser.add_argument(
        "--respondents", type=int, default=2000, help="number of respondents (default 2000)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--force",
        action="store_true",
        help="write into --out even if it is not empty (files of the same name are replaced, "
        "others are left as they are)",
    )
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    for flag, value in (("--cohorts", args.cohorts), ("--respondents", args.respondents)):
        if value < 1:
            raise UsageError(f"{flag} must be at least 1, not {value}")
    out: Path = args.out
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: is a file, not a directory")
    if out.is_dir() and any(out.iterdir()) and not args.force:
        raise UsageError(
            f"--out {out}: directory is not empty; pass --force to write into it anyway "
            "(files of the same name are replaced)"
        )
    try:
        summary = generate(out, cohorts=args.cohorts, respondents=args.respondents, seed=args.seed)
    except OSError as exc:
        raise UsageError(f"--out {out}: {_why(out, exc)}") from None
    print(describe(summary))
    return 0


def _why(out: Path, exc: OSError) -> str:
    """The reason a directory cannot be written, naming the path part that is in the way."""
    for parent in (out, *out.parents):
        if parent.exists():
            if not parent.is_dir():
                return f"{parent} is a file, not a directory"
            break
    return f"cannot write {exc.filename or out}: {exc.strerror or exc}"


def describe(summary: dict) -> str:
    """A few lines for people: each file with its rows and encoding, then the totals."""
    files: dict[str, int] = summary["files"]
    encodings: dict[str, str] = summary["encodings"]
    width = max(len(name) for name in files)
    lines = [f"wrote a sample raw export to {summary['out_dir']} ({len(files)} files):"]
    lines += [
        f"  {name:<{width}}  {rows:>9,} rows  {encodings.get(name, '')}"
        for name, rows in files.items()
    ]
    cohorts: list[str] = summary["cohorts"]
    named = ", ".join(cohorts[:SHOWN_COHORTS])
    if len(cohorts) > SHOWN_COHORTS:
        named += f" and {len(cohorts) - SHOWN_COHORTS} more"
    lines.append(
        f"{summary['rows']:,} response rows from {summary['respondents']:,} respondents "
        f"in {len(cohorts)} cohort{'s' * (len(cohorts) != 1)}: {named}"
    )
    return "\n".join(lines)
