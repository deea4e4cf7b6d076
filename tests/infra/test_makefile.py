"""The Makefile: what `make run` installs, what `make help` prints, and no placeholder left in
a recipe."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def make(*args: str) -> str:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    result = subprocess.run(
        ["make", "--no-print-directory", *args],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return result.stdout


def pip_installs(dry_run: str) -> list[str]:
    return [
        line
        for line in dry_run.splitlines()
        if "pip install" in line and "--upgrade pip" not in line
    ]


def test_run_installs_only_the_runtime_and_test_adds_the_tools() -> None:
    # -B: as in a fresh clone; -n: print the commands without running them.
    run = pip_installs(make("-n", "-B", "run"))
    assert run and all("[test" not in line and "lint]" not in line for line in run), run
    assert any("-e . -e programs/estimator" in line for line in run), run
    for target in ("test", "lint"):
        dev = pip_installs(make("-n", "-B", target))
        assert any("'.[test,lint]'" in line for line in dev), (target, dev)


def test_help_prints_no_unexpanded_make_variables() -> None:
    text = make("help")
    assert "install" in text and "images" in text
    assert "$(" not in text, [line for line in text.splitlines() if "$(" in line]


def recipe_lines(text: str) -> list[tuple[int, str]]:
    """(line number, text) of every recipe line, continuation lines included."""
    found, in_recipe, continued = [], False, False
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("\t") or (in_recipe and continued):
            found.append((number, line))
            in_recipe = True
        elif line.strip() and not line.startswith("#"):
            in_recipe = False
        continued = line.endswith("\\")
    return found


def test_no_recipe_holds_a_placeholder_the_shell_would_read_as_a_redirect() -> None:
    # `-var image_tag=<commit>` ran as a redirect from a file named "commit" (and wrote
    # the next word, -target=..., as a file): placeholders belong in help texts only.
    text = (REPO / "Makefile").read_text()
    placeholders = []
    for number, line in recipe_lines(text):
        unquoted = re.sub(r"'[^']*'|\"(?:[^\"\\]|\\.)*\"", "''", line.split("##")[0])
        if re.search(r"<[A-Za-z][\w-]*>?", unquoted):
            placeholders.append(f"Makefile:{number}: {line.strip()}")
    assert not placeholders, placeholders


def test_roll_luigid_rolls_the_assistant_and_make_assistant_runs_it() -> None:
    """The assistant is started and rolled with luigid (Jenkins' deploy stages call
    roll-luigid), after it; `make assistant` runs one beside `make luigid`."""
    roll = make("-n", "roll-luigid", "ENV=staging", "GIT_COMMIT=x", "BRANCH=main",
                "AWS_REGION=eu-west-1", "AWS_ACCOUNT_ID=123456789012")  # fmt: skip
    assert "for output in luigid_service_name assistant_service_name" in roll
    outputs = (REPO / "terraform" / "stack" / "outputs.tf").read_text()
    assert 'output "assistant_service_name"' in outputs
    assert "module.platform.assistant_service_name" in outputs
    local = make("-n", "-o", "install", "assistant", "LUIGID_PORT=8099")
    assert "pipeline assist --scheduler-url http://localhost:8099" in local
