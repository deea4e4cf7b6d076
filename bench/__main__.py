"""Run benchmarks and rewrite docs/benchmarks.md.

    python -m bench            # every bench/bench_*.py
    python -m bench fanout     # only bench/bench_fanout.py (the others keep their last results)

Each module has a docstring (what it measures and the target) and ``run() -> dict``;
results are kept in bench/results/<name>.json and docs/benchmarks.md is rendered from all
of them, with the machine and the command that produced each.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DOC = HERE.parent / "docs" / "benchmarks.md"


def available() -> list[str]:
    return sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))


def render() -> str:
    lines = [
        "# Benchmarks",
        "",
        "Produced by `make bench` (all) or `.venv/bin/python -m bench NAME` (one); each "
        "section says when and on what it ran. Timings on shared machines are noisy: "
        "medians and ratios measured in one run are what count.",
        "",
    ]
    for name in available():
        path = RESULTS / f"{name}.json"
        module = importlib.import_module(f"bench.bench_{name}")
        doc = (module.__doc__ or "").strip()
        lines += [f"## {name}", "", doc, ""]
        if not path.exists():
            lines += ["_not run yet_", ""]
            continue
        result = json.loads(path.read_text())
        lines += [
            f"Command: `{result['command']}` — {result['when']}, {result['machine']}, "
            f"{result['seconds']:.0f}s",
            "",
            "| metric | value |",
            "|---|---|",
        ]
        for key, value in result["metrics"].items():
            shown = f"{value:,.3f}" if isinstance(value, float) else f"{value}"
            lines.append(f"| {key} | {shown} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Run benchmarks (all, or the ones named), keep their results in "
        "bench/results/NAME.json and rewrite docs/benchmarks.md from every result.",
    )
    parser.add_argument(
        "names", nargs="*", metavar="NAME", help=f"benchmarks to run: {', '.join(available())}"
    )
    argv = parser.parse_args(argv).names
    names = argv or available()
    unknown = sorted(set(names) - set(available()))
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}; have: {', '.join(available())}")
    RESULTS.mkdir(exist_ok=True)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    for name in names:
        print(f"== {name}", flush=True)
        started = time.monotonic()
        metrics = importlib.import_module(f"bench.bench_{name}").run()
        result = {
            "command": f"python -m bench {name}" if argv else "make bench",
            "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": machine,
            "seconds": time.monotonic() - started,
            "metrics": metrics,
        }
        (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(metrics, indent=2), flush=True)
    DOC.write_text(render())
    print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
