"""jenkins/Jenkinsfile and jenkins/Jenkinsfile.branch-stacks stay thin: declarative, a
global timeout, one `make` call per stage in the house order, test reports published,
only targets the Makefile has; main deploys staging then, approved, production; other
branches deploy their own stack, which the cron job destroys again."""

from __future__ import annotations

import re

from tests.infra.tf import REPO

JENKINSFILE = (REPO / "jenkins" / "Jenkinsfile").read_text()
BRANCH_STACKS = (REPO / "jenkins" / "Jenkinsfile.branch-stacks").read_text()
MAKEFILE = (REPO / "Makefile").read_text()


def stages(text: str = JENKINSFILE) -> dict[str, list[str]]:
    """Stage name => the shell steps in it."""
    found: dict[str, list[str]] = {}
    parts = re.split(r"stage\('([^']+)'\)", text)
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        found[name] = re.findall(r"\bsh\s+['\"]([^'\"]+)['\"]", body)
    return found


def make_targets() -> set[str]:
    return set(re.findall(r"^([A-Za-z0-9][A-Za-z0-9_.-]*)\s*:(?!=)", MAKEFILE, re.M))


def test_declarative_with_a_global_timeout_and_reports():
    for text in (JENKINSFILE, BRANCH_STACKS):
        assert re.search(r"^pipeline \{", text, re.M)
        assert re.search(r"options \{[^}]*timeout\(time: \d+, unit: '(HOURS|MINUTES)'\)", text)
        assert "disableConcurrentBuilds()" in text
    post = JENKINSFILE[JENKINSFILE.index("post {") :]
    assert re.search(r"always \{\s*junit [^\n]*'reports/\*\.xml'", post)


def test_each_stage_is_one_make_call_in_order():
    found = stages()
    assert list(found) == [
        "Lint", "Test", "Regress", "Images", "Plan", "Deploy branch stack", "Deploy staging",
        "Plan production", "Deploy production",
    ]  # fmt: skip
    for name, steps in {**found, **stages(BRANCH_STACKS)}.items():
        assert len(steps) == 1 and steps[0].startswith("make "), f"stage {name}: {steps}"
    assert "DEPLOY_ENV = \"${env.BRANCH_NAME == 'main' ? 'staging' : 'branch'}\"" in JENKINSFILE
    assert 'BRANCH = "${env.BRANCH_NAME}"' in JENKINSFILE  # make names the branch stack
    assert found["Images"] == ["make images push-images ENV=$DEPLOY_ENV"]
    assert found["Plan"] == ["make tf-plan ENV=$DEPLOY_ENV"]
    assert found["Deploy branch stack"] == ["make tf-apply ENV=branch"]
    assert found["Deploy staging"] == ["make tf-apply roll-luigid ENV=staging"]
    assert found["Plan production"] == ["make push-images tf-plan ENV=prod"]
    assert found["Deploy production"] == ["make tf-apply roll-luigid ENV=prod"]


def stage_body(name: str) -> str:
    parts = re.split(r"stage\('([^']+)'\)", JENKINSFILE)
    return parts[parts.index(name) + 1]


def test_main_deploys_staging_then_production_after_approval_others_their_own_stack():
    assert "when { not { branch 'main' } }" in stage_body("Deploy branch stack")
    for name in ("Deploy staging", "Plan production", "Deploy production"):
        assert "when { branch 'main' }" in stage_body(name), name
    production = stage_body("Deploy production")
    assert re.search(r"input \{\s*message '[^']+'\s*ok '[^']+'", production)
    assert "input" not in stage_body("Deploy staging")
    # Credentials only where Terraform runs, never in the lint and test stages.
    for name in ("Lint", "Test"):
        assert "credentials(" not in stage_body(name)


def test_the_cron_job_destroys_expired_branch_stacks():
    assert re.search(r"triggers \{\s*cron\('[^']+'\)\s*\}", BRANCH_STACKS)
    assert "string(name: 'BRANCH_STACK_DAYS', defaultValue: '7'" in BRANCH_STACKS
    assert stages(BRANCH_STACKS) == {
        "Destroy expired branch stacks": [
            "make tf-destroy-expired-branches BRANCH_STACK_DAYS=$BRANCH_STACK_DAYS"
        ]
    }


def test_every_make_target_the_jenkinsfile_calls_exists():
    targets = make_targets()
    called = {
        word
        for text in (JENKINSFILE, BRANCH_STACKS)
        for steps in stages(text).values()
        for step in steps
        for word in step.split()[1:]
        if "=" not in word
    }
    assert {"lint", "test", "lint-docker", "lint-tf", "images", "push-images", "tf-plan",
            "tf-apply", "roll-luigid", "tf-destroy-expired-branches"} <= called  # fmt: skip
    missing = called - targets
    assert not missing, f"jenkins/Jenkinsfile calls make targets the Makefile lacks: {missing}"


def test_deploy_targets_carry_a_help_line():
    for target in ("lint-docker", "lint-tf", "checkov", "images", "push-images", "tf-init",
                   "tf-plan", "tf-apply", "tf-registries", "roll-luigid", "cloud-run",
                   "stack-name", "tf-destroy-branch", "tf-destroy-expired-branches"):  # fmt: skip
        assert re.search(rf"^{target}:.*## \S", MAKEFILE, re.M), f"{target} has no ## comment"


def test_make_test_runs_checkov():
    test_rule = re.search(r"^test:([^#\n]*)", MAKEFILE, re.M)
    assert test_rule and "checkov" in test_rule.group(1).split()
    assert re.search(r"^CHECKOV_VERSION := \d+\.\d+\.\d+$", MAKEFILE, re.M)
    assert "pip install --quiet checkov==$(CHECKOV_VERSION)" in MAKEFILE
    # A file checkov could not parse (its 10 s default on a loaded machine) fails too.
    assert "HCL_PARSE_TIMEOUT_SEC=300 $(CHECKOV)" in MAKEFILE
    assert 'grep -q "Parsing errors: [1-9]" reports/checkov.txt' in MAKEFILE
