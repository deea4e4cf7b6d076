"""``[resources] model_slots`` bounds the programs one ``pipeline run`` runs at once, and
programs take no ``--workers`` slot: with ``--workers 1`` and 2 model slots, two programs
run side by side, never three."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from pipeline.sampledata import generate
from tests.conftest import REPO, run_cli

NOOP = REPO / "bench" / "programs" / "noop.py"
DATE = "2026-11-22"


def overlap(intervals: list[tuple[dt.datetime, dt.datetime]]) -> int:
    """The most intervals open at one instant."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    most = current = 0
    for _when, step in events:
        current += step
        most = max(most, current)
    return most


def test_model_slots_bound_programs_not_workers(pipeline_home: Path, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    generate(raw, cohorts=6, respondents=300, seed=3)
    spec = tmp_path / "noop.toml"
    spec.write_text(
        'name = "noop"\nversion = "1.0.0"\n'
        f'command = ["python", "{NOOP}", "{{input}}", "{{output_dir}}", "--seconds", "1.5"]\n'
        'input_format = "csv"\ntimeout = "5m"\n[outputs]\nresults = "estimates.csv"\n'
    )
    override = tmp_path / "slots.cfg"
    override.write_text("[resources]\nmodel_slots = 2\n")
    proc = run_cli(
        "run", "--run-date", DATE, "--raw", str(raw), "--program", str(spec),
        "--workers", "1", "--local-scheduler",
        env={"LUIGI_CONFIG_PATH": str(override)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    runs = [
        json.loads(p.read_text())
        for p in (pipeline_home / "work" / DATE / "model").glob("*/*/run.json")
    ]
    assert len(runs) == 6
    intervals = [
        (dt.datetime.fromisoformat(r["started_at"]), dt.datetime.fromisoformat(r["finished_at"]))
        for r in runs
    ]
    assert overlap(intervals) == 2
