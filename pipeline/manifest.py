"""The run manifest of one program attempt as ``pipeline_runs`` columns.

The wrapper writes ``attempts/<id>/out/manifest.json`` (params, rendered command, sha256
of the input, frame and outputs, image digest, pipeline version); ``IngestResults``
loads it with the attempt's ``run.json`` and ``pipeline status --json`` shows it. An
attempt without a manifest (its wrapper never got that far) has empty manifest columns.
"""

from __future__ import annotations

import json
from typing import Any

from pipeline import storage
from pipeline.core.spec import ProgramSpec
from pipeline.executors.attempts import run_records
from pipeline.layout import Layout
from pipeline.warehouse.schema import MANIFEST_COLUMNS


def manifest_uri(layout: Layout, cohort: str, spec: ProgramSpec, attempt: str) -> str:
    return layout.attempt_manifest(cohort, spec.slug, attempt)


def manifest_columns(manifest: dict[str, Any] | None, spec: ProgramSpec) -> dict[str, Any]:
    """The MANIFEST_COLUMNS of ``pipeline_runs`` from a wrapper manifest (None: no
    manifest; only what the spec itself says)."""
    row: dict[str, Any] = {name: None for name, _ in MANIFEST_COLUMNS}
    row["params"] = json.dumps(spec.params, sort_keys=True, default=str)
    row["image"] = spec.image
    if not manifest:
        return row
    sums = manifest.get("checksums") or {}
    inputs = list((manifest.get("inputs") or {}).values())
    row.update(
        params=json.dumps(manifest.get("params", spec.params), sort_keys=True, default=str),
        command=json.dumps(manifest.get("command") or []),
        input_sha256=sums.get("input") or (inputs[0] if inputs else None),
        frame_sha256=sums.get("frame") or (inputs[1] if len(inputs) > 1 else None),
        results_sha256=sums.get("results") or (manifest.get("outputs") or {}).get(spec.results),
        # What ran (the task metadata's image) over what the spec asked for.
        image=manifest.get("image") or (manifest.get("program") or {}).get("image", spec.image),
        image_digest=manifest.get("image_digest") or "",
        pipeline_version=manifest.get("pipeline_version"),
    )
    return row


def read_manifest(layout: Layout, cohort: str, spec: ProgramSpec, attempt: str) -> dict | None:
    uri = manifest_uri(layout, cohort, spec, attempt)
    if not attempt or not storage.exists(uri):
        return None
    try:
        return storage.read_json(uri)
    except FileNotFoundError:  # removed since it was listed (a rerun)
        return None


def run_rows(layout: Layout, cohort: str, spec: ProgramSpec) -> list[dict[str, Any]]:
    """Every attempt's ``pipeline_runs`` rows (its run.json, and its abandoned cloud tasks
    in abandoned/*.json) with their manifest columns."""
    rows = []
    for uri in run_records(layout, cohort, spec):
        run = storage.read_json(uri)
        manifest = read_manifest(layout, cohort, spec, str(run.get("attempt") or ""))
        rows.append({**run, **manifest_columns(manifest, spec)})
    return rows
