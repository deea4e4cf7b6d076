"""The laptop respondent key file: made atomically once, and a broken one named."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import config
from pipeline.errors import ConfigError


@pytest.fixture
def key_home(pipeline_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("PIPELINE_RESPONDENT_KEY", raising=False)
    return pipeline_home / "secrets" / "respondent.key"


def test_made_once_whole_and_private(key_home: Path) -> None:
    key = config.respondent_key()
    assert len(key) == 64 and key_home.read_bytes() == key
    assert key_home.stat().st_mode & 0o777 == 0o600
    assert config.respondent_key() == key
    assert [p.name for p in key_home.parent.iterdir()] == ["respondent.key"]  # no temp left


def test_processes_racing_to_make_it_agree(key_home: Path) -> None:
    code = "from pipeline import config; print(config.respondent_key().decode())"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env={**os.environ}
        )
        for _ in range(4)
    ]
    keys = {p.communicate(timeout=60)[0].strip() for p in procs}
    assert keys == {key_home.read_text()}


@pytest.mark.parametrize(
    ("content", "problem"),
    [(b"", "is empty"), (b"\n  \n", "is empty"), (b"abc", "does not hold a key"),
     (b"\xff\xfe garbage", "cannot be read as text")],
)  # fmt: skip
def test_a_broken_key_file_is_named(key_home: Path, content: bytes, problem: str) -> None:
    key_home.parent.mkdir(parents=True)
    key_home.write_bytes(content)  # e.g. what a kill left before the atomic write existed
    with pytest.raises(ConfigError) as raised:
        config.respondent_key()
    message = str(raised.value)
    assert str(key_home) in message and problem in message
    assert "Delete it" in message and "PIPELINE_RESPONDENT_KEY" in message
