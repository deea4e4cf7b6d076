"""Shared fixtures: an isolated PIPELINE_HOME per test and helpers to run the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ESTIMATOR_SPEC = REPO / "programs" / "estimator" / "program.toml"


@pytest.fixture
def pipeline_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh PIPELINE_HOME with a respondent key in the environment."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("PIPELINE_HOME", str(home))
    monkeypatch.setenv("PIPELINE_RESPONDENT_KEY", "test-key-not-a-secret")
    monkeypatch.delenv("PIPELINE_STORAGE_ROOT", raising=False)
    monkeypatch.delenv("PIPELINE_WAREHOUSE", raising=False)
    return home


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 600):
    """Run the ``pipeline`` command as a user would (a separate process, repo as cwd)."""
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
