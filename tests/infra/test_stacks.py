"""One root configuration for every stack (terraform/stack), fed by per-environment values
and backend files, and the short-lived stacks of branch builds: their names, their
separate state, and what make runs for them (make -n prints the commands; nothing runs)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.infra.tf import (
    BRANCH_CLI,
    ENV_NAMES,
    ENVS,
    REPO,
    TERRAFORM,
    env_scope,
    luigi_cfg,
    parse,
    root,
    tfvars,
)

sys.path.insert(0, str(REPO / "jenkins"))
import branch_stacks

NAME_RULE = re.compile(r"^[a-z][a-z0-9-]{2,24}$")  # terraform/stack and platform's validation


def make(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", "-s", *args, "GIT_COMMIT=0123abc"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def backend(env: str) -> dict[str, object]:
    return parse(ENVS / f"{env}.backend.hcl")


def test_one_root_configuration_and_no_copies():
    assert not list(ENVS.rglob("*.tf")), "terraform/envs holds values, never configuration"
    assert sorted(p.name for p in ENVS.iterdir()) == sorted(
        f"{env}.{kind}" for env in ENV_NAMES for kind in ("tfvars", "backend.hcl")
    )
    roots = {p.parent for p in TERRAFORM.rglob("*.tf") if "backend" in p.read_text()}
    assert roots == {root().path}, "only terraform/stack may declare a backend"


@pytest.mark.parametrize("env", ENV_NAMES)
def test_every_value_file_sets_only_declared_variables(env):
    declared = root().labelled("variable")
    for name in (f"{env}.tfvars",):
        unknown = set(parse(ENVS / name)) - set(declared)
        assert not unknown, f"terraform/envs/{name} sets undeclared {sorted(unknown)}"
    required = {k for k, v in declared.items() if "default" not in v} - {"image_tag"}
    missing = required - set(tfvars(env))
    assert not missing, f"{env} leaves {sorted(missing)} unset"
    assert "REPLACE-ME" in (ENVS / f"{env}.tfvars").read_text()


def test_backends_keep_every_stacks_state_apart():
    keys = {}
    for env in ENV_NAMES:
        settings = backend(env)
        for key in ("bucket", "region", "encrypt", "use_lockfile"):
            assert key in settings, f"{env}.backend.hcl lacks {key}"
        keys[env] = settings.get("key")
    assert keys["prod"] == "survey-pipeline/prod/terraform.tfstate"
    assert keys["staging"] == "survey-pipeline/staging/terraform.tfstate"
    assert keys["branch"] is None  # one key per branch stack, from make
    plan = make("-n", "tf-plan", "ENV=branch", "BRANCH=feature/x")
    assert plan.returncode == 0, plan.stderr
    name = branch_stacks.stack_name("feature/x")
    assert f"-backend-config=key=survey-pipeline/branches/{name}/terraform.tfstate" in plan.stdout
    assert f"TF_DATA_DIR=.terraform/{name}" in plan.stdout


def test_make_feeds_each_environment_its_files():
    for env, files in (("prod", ["prod"]), ("staging", ["staging"]),
                       ("branch", ["staging", "branch"])):  # fmt: skip
        out = make("-n", "tf-plan", f"ENV={env}", "BRANCH=feature/x").stdout
        assert "terraform -chdir=terraform/stack init" in out
        assert f"-backend-config=../envs/{env}.backend.hcl" in out
        plan = next(line for line in out.splitlines() if " plan " in line)
        assert re.findall(r"-var-file=\.\./envs/(\w+)\.tfvars", plan) == files
        assert "-var image_tag=0123abc" in plan
        if env == "branch":
            name = branch_stacks.stack_name("feature/x")
            assert f"-var name={name}" in plan and "-var 'branch=feature/x'" in plan
            assert f"-out=tfplan-{name}" in plan
        else:
            assert "-var name=" not in plan


def test_production_is_luigi_cfg_and_staging_is_not():
    assert env_scope("prod").resolve("${var.name}") == luigi_cfg().get("ecs", "cluster")
    assert env_scope("staging").resolve("${var.name}") == "survey-pipeline-staging"
    assert make("stack-name", "ENV=prod").stdout.strip() == "survey-pipeline"
    assert make("stack-name", "ENV=staging").stdout.strip() == "survey-pipeline-staging"


@pytest.mark.parametrize(
    "branch",
    ["feature/x", "Feature/Spot-Retries_for ECS!!", "a" * 200, "renovate/boto3-1.x",
     "___", "fix-123", "ß/ü"],
)  # fmt: skip
def test_branch_stack_names_are_valid_aws_names(branch):
    result = make("stack-name", "ENV=branch", f"BRANCH={branch}")
    assert result.returncode == 0, result.stderr
    name = result.stdout.strip()
    assert name == branch_stacks.stack_name(branch)
    assert NAME_RULE.match(name) and len(name) <= 25, name
    assert branch_stacks.is_branch_stack(name)
    assert name.startswith("sp-") and "--" not in name
    # Derived names the stack creates stay within AWS's limits too.
    assert len(f"{name}-luigid") <= 32  # ALB and target group names
    assert len(f"{name}-work-123456789012") <= 63  # S3 bucket names


def test_branch_stack_names_differ_per_branch_and_never_hit_prod_or_staging():
    names = {branch_stacks.stack_name(b) for b in ("feature/a", "feature-a", "Feature/A")}
    assert len(names) == 3  # same slug, different hash
    assert not branch_stacks.is_branch_stack("survey-pipeline")
    assert not branch_stacks.is_branch_stack("survey-pipeline-staging")
    refused = make("stack-name", "ENV=branch", "STACK=survey-pipeline")
    assert refused.returncode != 0 and "not a branch stack name" in refused.stderr
    refused = make("stack-name", "ENV=prod", "STACK=sp-feature-x-0a1b2c")
    assert refused.returncode != 0
    assert make("stack-name", "ENV=qa").returncode != 0


def test_destroying_is_for_branch_stacks_only():
    refused = make("-n", "tf-destroy-branch", "ENV=prod")
    assert refused.returncode != 0 or "exit 2" in refused.stdout
    out = make("-n", "tf-destroy-branch", "ENV=branch", "BRANCH=feature/x").stdout
    name = branch_stacks.stack_name("feature/x")
    assert "destroy -input=false -auto-approve" in out
    assert "-var-file=../envs/branch.tfvars" in out and f"-var name={name}" in out
    assert "forget --backend terraform/envs/branch.backend.hcl" in out
    assert f"--stack {name}" in out


def test_branch_stack_is_small_and_scales_to_zero():
    branch = env_scope("branch").call("platform").values
    staging = env_scope("staging").call("platform").values
    assert branch["name"] == BRANCH_CLI["name"] and branch["environment"] == "branch"
    assert branch["luigid_ui_hostname"] == (
        '${replace(var.luigid_ui_hostname, "{stack}", var.name)}'
    )
    assert tfvars("branch")["luigid_ui_hostname"].startswith("luigid-{stack}.")
    assert branch["daily_run_enabled"] is False
    assert branch["task_history_db"] == {"enabled": False}
    assert branch["monitors_enabled"] is False and branch["deletion_protection"] is False
    assert branch["estimator_fargate_spot"] is True and branch["batch_use_spot"] is True
    for size in ("worker_cpu", "worker_memory", "ec2_max_instances", "batch_max_vcpus"):
        assert branch[size] <= staging[size], size
    # Every compute pool's minimum is 0 whatever the stack (scale to zero between runs).
    cluster = env_scope("branch").call("platform").call("ecs_cluster")
    group = cluster.module.resource("aws_autoscaling_group", "instances")
    assert group["min_size"] == 0
    batch = env_scope("branch").call("platform").call("batch")
    resources = batch.module.resource("aws_batch_compute_environment")["compute_resources"][0]
    assert (resources["min_vcpus"], resources["desired_vcpus"]) == (0, 0)
