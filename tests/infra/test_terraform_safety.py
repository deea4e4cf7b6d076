"""What costs money or leaks data if it is wrong: IAM breadth, the bucket, the registries,
compute that must idle at zero, secrets in plain environment, alerts on real metrics."""

from __future__ import annotations

import re

import pytest

from tests.infra.tf import ENV_NAMES, REPO, Module, all_modules, env_scope, root, statements

MODULES = REPO / "terraform" / "modules"


def module(name: str) -> Module:
    return Module(MODULES / name)


def policy_statements():
    for m in all_modules():
        for rtype, name, body in m.typed("data"):
            if rtype == "aws_iam_policy_document":
                for statement in statements(body):
                    yield f"{m.name}/{name}/{statement.get('sid', '?')}", statement


def as_list(value) -> list[str]:
    return value if isinstance(value, list) else [value]


def test_no_allow_statement_grants_everything():
    seen = 0
    for where, statement in policy_statements():
        seen += 1
        if statement.get("effect", "Allow") != "Allow":
            continue
        actions = as_list(statement.get("actions", []))
        resources = as_list(statement.get("resources", []))
        assert "*" not in actions, f'{where}: Action "*"'
        assert not ("*" in resources and any(a.endswith("*") for a in actions)) or where.startswith(
            "kms/"
        ), f'{where}: wildcard actions on Resource "*"'
        assert not any(a.split(":")[-1] == "*" and a.split(":")[0] == "iam" for a in actions), where
    assert seen > 20


def test_resource_star_only_where_aws_allows_nothing_else():
    # Actions without resource-level permissions, and key policies (whose "*" is the key).
    allowed = {
        "ecr:GetAuthorizationToken",
        "ecs:DescribeTaskDefinition",
        "ecs:RegisterTaskDefinition",  # conditioned on the derived_from request tag
        "batch:DescribeJobs",
        "batch:DescribeJobDefinitions",
        "batch:ListJobs",
    }
    for where, statement in policy_statements():
        if statement.get("effect", "Allow") != "Allow" or "*" not in as_list(
            statement.get("resources", [])
        ):
            continue
        if where.startswith("kms/"):
            continue
        extra = set(as_list(statement["actions"])) - allowed
        assert not extra, f'{where}: {sorted(extra)} on Resource "*"'


def worker_statement(sid: str) -> dict:
    docs = {
        name: body
        for t, name, body in module("iam").typed("data")
        if t == "aws_iam_policy_document"
    }
    return next(s for s in statements(docs["worker_task"]) if s["sid"] == sid)


def test_worker_may_run_only_the_estimator_and_pass_only_its_roles():
    run = worker_statement("RunOnlyTheEstimator")
    assert run["actions"] == ["ecs:RunTask"]
    assert run["resources"] == [
        "${local.estimator_task_definitions}",
        "${local.derived_task_definitions}",
    ]
    locals_ = module("iam").locals()
    assert (
        locals_["estimator_task_definitions"]
        == "${local.ecs}:task-definition/${var.estimator_family}:*"
    )
    assert run["condition"][0]["variable"] == "ecs:cluster"
    # Derived definitions (the spec's image) stay in the estimator's name space.
    assert (
        locals_["derived_task_definitions"]
        == "${local.ecs}:task-definition/${var.estimator_family}-*:*"
    )
    register = worker_statement("RegisterDerivedTaskDefinitions")
    assert register["condition"][0]["variable"] == "aws:RequestTag/derived_from"
    passrole = worker_statement("PassOnlyTheEstimatorRoles")
    assert passrole["actions"] == ["iam:PassRole"]
    assert passrole["resources"] == "${local.estimator_roles}"
    assert locals_["estimator_roles"] == [
        '${aws_iam_role.this["estimator_task"].arn}',
        '${aws_iam_role.this["estimator_execution"].arn}',
    ]
    assert passrole["condition"][0]["values"] == ["ecs-tasks.amazonaws.com"]
    submit = worker_statement("SubmitOnlyTheEstimatorJob")
    assert all(
        "var.batch_job_definition" in r
        or "var.batch_job_queue" in r
        or r.startswith("${local.derived")
        for r in submit["resources"]
    )
    assert locals_["derived_job_definitions"] == (
        "${local.batch}:job-definition/${var.batch_job_definition}-*"
    )


def test_only_expected_managed_policies_are_attached():
    for m in all_modules():
        for rtype, name, body in m.typed("resource"):
            if rtype == "aws_iam_role_policy_attachment":
                assert body["policy_arn"].rsplit("/", 1)[-1] in (
                    "AmazonEC2ContainerServiceforEC2Role",
                    "AmazonRDSEnhancedMonitoringRole",
                ), f"{m.name}/{name} attaches {body['policy_arn']}"


def test_work_bucket_is_versioned_encrypted_private_tls_only_and_expires_work_files():
    s = module("storage")
    assert (
        s.resource("aws_s3_bucket_versioning")["versioning_configuration"][0]["status"] == "Enabled"
    )
    sse = s.resource("aws_s3_bucket_server_side_encryption_configuration")["rule"][0]
    default = sse["apply_server_side_encryption_by_default"][0]
    assert default["sse_algorithm"] == "aws:kms"
    assert default["kms_master_key_id"] == "${var.kms_key_arn}"
    block = s.resource("aws_s3_bucket_public_access_block")
    for flag in (
        "block_public_acls",
        "block_public_policy",
        "ignore_public_acls",
        "restrict_public_buckets",
    ):
        assert block[flag] is True, flag
    assert (
        s.resource("aws_s3_bucket_ownership_controls")["rule"][0]["object_ownership"]
        == "BucketOwnerEnforced"
    )
    docs = {name: body for t, name, body in s.typed("data") if t == "aws_iam_policy_document"}
    tls = [
        st for st in statements(docs["this"])
        if st["effect"] == "Deny" and st["condition"][0]["variable"] == "aws:SecureTransport"
    ]  # fmt: skip
    assert tls and tls[0]["condition"][0]["values"] == ["false"]
    assert (
        s.resource("aws_s3_bucket_policy")["policy"] == "${data.aws_iam_policy_document.this.json}"
    )
    rules = {r["id"]: r for r in s.resource("aws_s3_bucket_lifecycle_configuration")["rule"]}
    work = rules["expire-old-work-files"]
    assert work["filter"][0]["prefix"] == "work/"
    assert work["expiration"][0]["days"] == "${var.work_retention_days}"
    assert "abort_incomplete_multipart_upload" in rules["abort-incomplete-uploads"]
    assert s.resource("aws_s3_bucket_logging")["target_bucket"] == "${aws_s3_bucket.logs.id}"


def test_registries_scan_on_push_and_are_immutable():
    repo = module("ecr").resource("aws_ecr_repository")
    assert repo["image_tag_mutability"] == "IMMUTABLE"
    assert repo["image_scanning_configuration"][0]["scan_on_push"] is True
    assert repo["encryption_configuration"][0]["encryption_type"] == "KMS"


def test_compute_idles_at_zero():
    ce = module("batch").resource("aws_batch_compute_environment")["compute_resources"][0]
    assert ce["min_vcpus"] == 0 and ce["desired_vcpus"] == 0
    asg = module("ecs_cluster").resource("aws_autoscaling_group", "instances")
    assert asg["min_size"] == 0
    assert "desired_capacity" not in asg  # ECS managed scaling owns it
    provider = module("ecs_cluster").resource("aws_ecs_capacity_provider", "ec2")
    scaling = provider["auto_scaling_group_provider"][0]["managed_scaling"][0]
    assert scaling["status"] == "ENABLED" and scaling["target_capacity"] == 100
    providers = module("ecs_cluster").resource("aws_ecs_cluster_capacity_providers")
    assert "FARGATE" in providers["capacity_providers"]
    # luigid and its assistant are the only services, one task each, never scaled.
    services = sorted(
        (m.name, n)
        for m in all_modules()
        for t, n, _ in m.typed("resource")
        if t == "aws_ecs_service"
    )
    assert services == [("luigid", "assistant"), ("luigid", "this")]
    for name in ("this", "assistant"):
        assert module("luigid").resource("aws_ecs_service", name)["desired_count"] == 1
    scaling = [t for m in all_modules() for t, _, _ in m.typed("resource")
               if t.startswith("aws_appautoscaling")]  # fmt: skip
    assert scaling == []


def test_batch_retries_only_lost_hosts_and_has_a_timeout():
    jd = module("batch").resource("aws_batch_job_definition")
    rules = jd["retry_strategy"][0]["evaluate_on_exit"]
    assert rules[0] == {"on_status_reason": "Host EC2*", "action": "RETRY"}
    assert rules[-1] == {"on_reason": "*", "action": "EXIT"}
    assert jd["timeout"][0]["attempt_duration_seconds"] == "${var.attempt_timeout_seconds}"


def test_luigid_is_internal_and_authenticated():
    lb = module("luigid").resource("aws_lb")
    assert lb["internal"] is True
    https = module("luigid").resource("aws_lb_listener", "https")
    first, second = https["default_action"]
    assert first["order"] == 1 and first["type"].startswith("${var.auth.oidc == null")
    assert second["type"] == "forward" and second["order"] == 2
    http = module("luigid").resource("aws_lb_listener", "http")
    assert http["default_action"][0]["type"] == "redirect"
    service = module("luigid").resource("aws_ecs_service", "this")
    assert service["network_configuration"][0]["assign_public_ip"] is False
    assert service["deployment_maximum_percent"] == 100  # never two luigids on one state file


def test_the_assistant_runs_beside_luigid_as_the_worker_would():
    """`pipeline assist`: one always-on task of its own task definition (the pipeline
    image), with the worker's roles, network, secrets and environment, private, logging to
    CloudWatch under its own group with the same retention and key as every task's."""
    luigid = module("luigid")
    service = luigid.resource("aws_ecs_service", "assistant")
    assert service["task_definition"] == "${module.assistant_task.arn}"
    assert service["launch_type"] == "FARGATE" and service["desired_count"] == 1
    assert service["network_configuration"][0]["assign_public_ip"] is False
    assert service["network_configuration"][0]["security_groups"] == [
        "${var.assistant.security_group_id}"
    ]
    assert "load_balancer" not in service  # nobody reaches it: it asks luigid for work
    task = luigid.labelled("module")["assistant_task"]
    assert task["source"] == "../task" and task["command"] == ["pipeline", "assist"]
    assert task["image"] == "${var.image}"  # the same image as luigid
    assert task["log_retention_days"] == "${var.log_retention_days}"
    assert task["logs_kms_key_arn"] == "${var.logs_kms_key_arn}"
    assert task["stop_timeout"] >= 120  # time to stop the cloud tasks it started
    call = module("platform").labelled("module")["luigid"]["assistant"]
    worker = module("platform").labelled("module")["worker_task"]
    assert call["task_role_arn"] == worker["task_role_arn"]
    assert call["execution_role_arn"] == worker["execution_role_arn"]
    assert call["secrets"] == worker["secrets"]
    where = {"PIPELINE_SCHEDULER_HOST", "PIPELINE_SCHEDULER_PORT"}
    assert call["environment"] == {
        k: v for k, v in worker["environment"].items() if k not in where
    }  # the module sets where luigid is from its own name and port:
    assert "local.hostname" in task["environment"] and "var.port" in task["environment"]
    assert call["security_group_id"] == "${module.network.worker_security_group_id}"
    clients = module("platform").labelled("module")["luigid"]["client_security_groups"]
    assert call["security_group_id"] in clients.values()  # it may reach luigid
    policy = luigid.resource("aws_iam_role_policy", "assistant_logs")
    assert policy["role"] == "${var.assistant.execution_role_name}"
    assert (
        "logs:PutLogEvents" in policy["policy"]
        and "assistant_task.log_group_arn" in policy["policy"]
    )


def test_secrets_are_never_plain_environment():
    secret_names = {"GOOGLE_APPLICATION_CREDENTIALS_JSON", "PIPELINE_RESPONDENT_KEY", "DD_API_KEY",
                    "LUIGID_DB_SECRET"}  # fmt: skip
    for m in all_modules():
        for name, call in m.labelled("module").items():
            environment = call.get("environment")
            if isinstance(environment, dict):
                assert not secret_names & set(environment), (
                    f"{m.name}/{name} puts a secret in environment"
                )
    worker = module("platform").labelled("module")["worker_task"]["secrets"]
    assert worker == {
        "GOOGLE_APPLICATION_CREDENTIALS_JSON": "${module.secrets.arns.bigquery_key}",
        "PIPELINE_RESPONDENT_KEY": "${module.secrets.arns.respondent_key}",
    }
    datadog = (MODULES / "task" / "datadog.tf").read_text()
    assert (
        'secrets      = [{ name = "DD_API_KEY", valueFrom = local.dd.api_key_secret_arn }]'
        in datadog
    )
    assert "secret_string" not in module("secrets").text()  # values are put by hand, never in state


def test_every_task_runs_read_only_and_unprivileged():
    text = module("task").text() + module("batch").text()
    assert text.count("readonlyRootFilesystem = true") == 4  # main, agent init, agent, batch
    assert "privileged             = true" not in text


def test_monitors_watch_metrics_the_pipeline_declares():
    metrics = pytest.importorskip("pipeline.metrics", reason="needs the pipeline package (.venv)")
    text = module("monitoring").text()
    queried = set(re.findall(r"survey_pipeline\.([a-z_.]+)\{", text))
    assert {"task.failures", "orphans.reaped"} <= queried
    declared = set(metrics.METRICS)
    assert queried <= declared, f"monitors query undeclared metrics: {queried - declared}"
    assert metrics.DEFAULT_NAMESPACE == "survey_pipeline"


def test_environments_guard_their_account_and_keep_staging_off_schedule():
    main = (root().path / "main.tf").read_text()
    assert "allowed_account_ids = [var.aws_account_id]" in main
    scopes = {env: env_scope(env).call("platform") for env in ENV_NAMES}
    assert scopes["prod"].values["daily_run_enabled"] is True
    assert scopes["staging"].values["daily_run_enabled"] is False
    assert scopes["branch"].values["daily_run_enabled"] is False
    # Production keeps everything it cannot get back; only branch stacks are disposable.
    assert scopes["prod"].values["deletion_protection"] is True
    assert scopes["prod"].values["force_destroy"] is False
    assert scopes["staging"].values["force_destroy"] is False
    assert scopes["branch"].values["force_destroy"] is True
    prod_db = scopes["prod"].values["task_history_db"]
    assert prod_db["multi_az"] is True and prod_db["deletion_protection"] is True


def test_security_group_descriptions_use_only_characters_aws_accepts():
    """EC2 refuses a description with e.g. an apostrophe, at apply time, not at plan."""
    allowed = re.compile(r"[A-Za-z0-9 ._\-:/()#,@\[\]+=&;{}!$*]*")
    kinds = ("aws_security_group", "aws_vpc_security_group_ingress_rule",
             "aws_vpc_security_group_egress_rule")  # fmt: skip
    checked = 0
    for m in all_modules():
        for rtype, name, body in m.typed("resource"):
            if rtype in kinds:
                literal = re.sub(r"\$\{[^}]*\}", "", body["description"])
                assert allowed.fullmatch(literal), (
                    f"{m.name}/{rtype}.{name}: {body['description']!r}"
                )
                checked += 1
    assert checked > 15
