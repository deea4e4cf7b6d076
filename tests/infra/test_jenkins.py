"""jenkins/Jenkinsfile stays thin: declarative, a global timeout, one `make` call per
stage in the house order, test reports published, and only targets the Makefile has."""

from __future__ import annotations

import re

from tests.infra.tf import REPO

JENKINSFILE = (REPO / "jenkins" / "Jenkinsfile").read_text()
MAKEFILE = (REPO / "Makefile").read_text()


def stages() -> dict[str, list[str]]:
    """Stage name => the shell steps in it."""
    found: dict[str, list[str]] = {}
    parts = re.split(r"stage\('([^']+)'\)", JENKINSFILE)
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        found[name] = re.findall(r"\bsh\s+['\"]([^'\"]+)['\"]", body)
    return found


def make_targets() -> set[str]:
    return set(re.findall(r"^([A-Za-z0-9][A-Za-z0-9_.-]*)\s*:(?!=)", MAKEFILE, re.M))


def test_declarative_with_a_global_timeout_and_reports():
    assert JENKINSFILE.lstrip().startswith("//") or JENKINSFILE.lstrip().startswith("pipeline")
    assert re.search(r"^pipeline \{", JENKINSFILE, re.M)
    assert re.search(r"options \{[^}]*timeout\(time: \d+, unit: '(HOURS|MINUTES)'\)", JENKINSFILE)
    post = JENKINSFILE[JENKINSFILE.index("post {") :]
    assert re.search(r"always \{\s*junit [^\n]*'reports/\*\.xml'", post)


def test_each_stage_is_one_make_call_in_order():
    found = stages()
    assert list(found) == [
        "Lint", "Test", "Regress", "Images", "Plan", "Deploy production", "Deploy staging",
    ]  # fmt: skip
    for name, steps in found.items():
        assert len(steps) == 1 and steps[0].startswith("make "), f"stage {name}: {steps}"
    assert "when { branch 'main' }" in JENKINSFILE
    assert "when { not { branch 'main' } }" in JENKINSFILE
    assert (
        "ENV=prod" in found["Deploy production"][0]
        and "roll-luigid" in found["Deploy production"][0]
    )
    assert "ENV=staging" in found["Deploy staging"][0]


def test_every_make_target_the_jenkinsfile_calls_exists():
    targets = make_targets()
    called = {
        word
        for steps in stages().values()
        for step in steps
        for word in step.split()[1:]
        if "=" not in word
    }
    assert {"lint", "test", "lint-docker", "lint-tf", "images", "push-images", "tf-plan",
            "tf-apply", "roll-luigid"} <= called  # fmt: skip
    missing = called - targets
    assert not missing, f"jenkins/Jenkinsfile calls make targets the Makefile lacks: {missing}"


def test_deploy_targets_carry_a_help_line():
    for target in ("lint-docker", "lint-tf", "images", "push-images", "tf-plan", "tf-apply",
                   "roll-luigid", "cloud-run"):  # fmt: skip
        assert re.search(rf"^{target}:.*## \S", MAKEFILE, re.M), f"{target} has no ## comment"
