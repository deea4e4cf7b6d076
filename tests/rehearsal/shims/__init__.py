"""Recording shims for ``terraform``, ``docker`` and ``aws`` (``_shimlib.py``), and a helper
to use them: :class:`Shims` puts them first on PATH in an environment for a subprocess and
reads back what they recorded. ``tests/rehearsal/conftest.py`` has it as the ``shims``
fixture::

    result = subprocess.run(["make", "tf-plan", "ENV=prod"], env=shims.env(), ...)
    plan = shims.calls("terraform", "plan")[0]
    assert plan.var("image_tag") == commit and not shims.refusals()
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.rehearsal.shims._shimlib import ACCOUNT, REGION

SHIMS_DIR = Path(__file__).resolve().parent
REGISTRY = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"

# What the surrounding environment must not leak into a rehearsal: make's own variables
# and everything the Makefile or the tools read from the environment.
SCRUBBED = (
    "MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEFILES", "ENV", "STACK", "BRANCH", "GIT_COMMIT",
    "RUN_DATE", "TF_DATA_DIR", "TF_CLI_ARGS", "AWS_REGION", "AWS_DEFAULT_REGION",
    "AWS_ACCOUNT_ID", "AWS_PROFILE", "ECR_REGISTRY", "DD_API_KEY", "DD_APP_KEY",
    "SHIM_TF_OUTPUTS", "SHIM_AWS_REGION", "SHIM_AWS_ACCOUNT",
)  # fmt: skip

__all__ = ["ACCOUNT", "REGION", "REGISTRY", "SHIMS_DIR", "Call", "Shims"]


@dataclass(frozen=True)
class Call:
    """One recorded call: ``tool``, ``argv`` and what the shim parsed of it (``command``:
    terraform's and docker's subcommand, aws' command words; ``flags`` as (name, value)
    pairs; ``args``: the positional arguments)."""

    tool: str
    argv: list[str]
    cwd: str
    env: dict[str, str]
    env_set: list[str]
    refused: str | None
    parsed: dict[str, Any] = field(default_factory=dict)

    @property
    def command(self) -> str:
        words = self.parsed.get("subcommand") or self.parsed.get("command") or []
        return words if isinstance(words, str) else " ".join(words)

    @property
    def args(self) -> list[str]:
        return list(self.parsed.get("args", []))

    @property
    def chdir(self) -> str:
        return str(self.parsed.get("chdir", "."))

    def values(self, flag: str) -> list[str]:
        """Every value given to ``flag`` (``-var``, ``--region``...), in order."""
        return [v for n, v in self.parsed.get("flags", []) if n == flag and v is not None]

    def value(self, flag: str) -> str | None:
        found = self.values(flag)
        return found[-1] if found else None

    def has(self, flag: str) -> bool:
        return any(n == flag for n, _ in self.parsed.get("flags", []))

    def var(self, name: str) -> str | None:
        """terraform ``-var name=value``: the last value given."""
        found = [v.split("=", 1)[1] for v in self.values("-var") if v.startswith(f"{name}=")]
        return found[-1] if found else None


class Shims:
    """The shims' log and state for one rehearsal, under ``workdir``."""

    def __init__(self, workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.log = workdir / "shim-calls.jsonl"
        self.state = workdir / "shim-state"

    def env(self, base: dict[str, str] | None = None, **extra: str) -> dict[str, str]:
        """``base`` (default: this process's environment) without what could leak into a
        rehearsal (``SCRUBBED``), the shims first on PATH, and ``extra``."""
        env = {k: v for k, v in (os.environ if base is None else base).items()}
        for name in SCRUBBED:
            env.pop(name, None)
        env["PATH"] = os.pathsep.join([str(SHIMS_DIR), env.get("PATH", os.defpath)])
        env["SHIM_LOG"] = str(self.log)
        env["SHIM_STATE"] = str(self.state)
        env["SHIM_PYTHON"] = sys.executable
        env.update(extra)
        return env

    def note(self, tool: str, *argv: str) -> None:
        """Record an event that is no tool call (e.g. Jenkins' approval), in order."""
        entry = {"tool": tool, "argv": list(argv), "cwd": "", "env": {}, "env_set": []}
        with self.log.open("a") as fh:
            fh.write(json.dumps({**entry, "refused": None, "parsed": {}}) + "\n")

    def calls(self, tool: str | None = None, command: str | None = None) -> list[Call]:
        """Recorded calls in order, optionally of one tool and one command
        (``"plan"``, ``"ecs update-service"``)."""
        if not self.log.exists():
            return []
        found = []
        for line in self.log.read_text().splitlines():
            data = json.loads(line)
            found.append(
                Call(
                    tool=data["tool"],
                    argv=data["argv"],
                    cwd=data["cwd"],
                    env=data["env"],
                    env_set=data.get("env_set", []),
                    refused=data["refused"],
                    parsed=data.get("parsed") or {},
                )
            )
        return [
            c
            for c in found
            if (tool is None or c.tool == tool) and (command is None or c.command == command)
        ]

    def refusals(self) -> list[Call]:
        return [c for c in self.calls() if c.refused]
