"""Fixtures of the rehearsals: the recording shims of terraform, docker and aws."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.rehearsal.shims import Shims


@pytest.fixture
def shims(tmp_path: Path) -> Shims:
    """Shims whose calls are recorded under this test's tmp_path: run a subprocess with
    ``env=shims.env()`` (the shims first on PATH), then read ``shims.calls(...)``."""
    return Shims(tmp_path / "shims")
