"""The job document: everything the wrapper needs to run one program attempt.

Written by the executors package (``executors/attempts.py``) as ``job.json`` in the
attempt's directory and read by ``python -m pipeline.wrapper --job URI`` inside the
program's container. Pure data: no I/O here.

``MANIFEST_FILE`` is the other half of the contract: the name of the manifest the wrapper
writes last into the output directory (its presence means the outputs are whole).
``pipeline.layout`` names it through this constant, as the wrapper cannot import layout.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline.core.spec import ProgramSpec, spec_from_dict
from pipeline.errors import SpecError

DEFAULT_GRACE_SECONDS = 30.0
MANIFEST_FILE = "manifest.json"  # in the job's output directory, written by the wrapper
# In a checkpoint store (``JobDocument.checkpoint``): the pointer to the newest complete
# generation, written last (docs/executors.md, "Checkpoints").
CHECKPOINT_POINTER = "checkpoint.json"
# Environment of the wrapper: which capacity this submission runs on ("spot" or
# "on_demand"), set by the executor per submission (the job document is the same for all).
CAPACITY_ENV = "PIPELINE_CAPACITY"


@dataclass(frozen=True)
class JobDocument:
    """One attempt of one program run for one cohort."""

    spec: ProgramSpec
    run_date: str
    cohort: str
    attempt: str
    input: str  # the cohort's cleansed rows (local path or s3://)
    frame: str  # the physician frame
    output: str  # the program's output directory
    grace_seconds: float = DEFAULT_GRACE_SECONDS  # SIGTERM → SIGKILL at the deadline
    # The cohort's checkpoint store (local path or s3:// prefix) when the spec has a
    # checkpoint_dir: shared by every attempt of the cohort and spec.
    checkpoint: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "spec": self.spec.to_dict(),
            "run_date": self.run_date,
            "cohort": self.cohort,
            "attempt": self.attempt,
            "input": self.input,
            "frame": self.frame,
            "output": self.output,
            "grace_seconds": self.grace_seconds,
            **({"checkpoint": self.checkpoint} if self.checkpoint else {}),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "job document") -> JobDocument:
        """Read a job document; a missing key raises ``SpecError`` naming it."""
        missing = [k for k in ("spec", "run_date", "cohort", "input", "frame", "output")
                   if k not in data]  # fmt: skip
        if missing:
            raise SpecError(f"{source}: missing key(s) {', '.join(missing)}")
        return cls(
            spec=spec_from_dict(data["spec"], source=f"{source} (cohort {data['cohort']})"),
            run_date=str(data["run_date"]),
            cohort=str(data["cohort"]),
            attempt=str(data.get("attempt", "")),
            input=str(data["input"]),
            frame=str(data["frame"]),
            output=str(data["output"]),
            grace_seconds=float(data.get("grace_seconds", DEFAULT_GRACE_SECONDS)),
            checkpoint=str(data.get("checkpoint", "")),
        )
