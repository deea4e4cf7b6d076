"""The stack is wired the way the Python code expects it: luigi.cfg's names and port, the
cloud override's variables, what the schedules start, where the logs go."""

from __future__ import annotations

import configparser
import json
import os
import re
import shlex
import subprocess
import sys

import pytest

from tests.infra.tf import REPO, Module, Unresolved, all_modules, env_scope, luigi_cfg

CLOUD_CFG = REPO / "docker" / "luigi.cloud.cfg"
LUIGID_CFG = REPO / "docker" / "luigid.cloud.cfg"


def platform(env: str):
    return env_scope(env).call("platform")


def deployed_names(env: str) -> dict[str, str]:
    """What the luigi.cfg settings name, as Terraform creates them in ``env``."""
    p = platform(env)
    return {
        "ecs.cluster": p.call("ecs_cluster").attr("aws_ecs_cluster", "this", "name"),
        "ecs.task_definition": p.call("estimator_task").attr(
            "aws_ecs_task_definition", "this", "family"
        ),
        "ecs.container_name": p.call("estimator_task").values["container_name"],
        "batch.job_queue": p.call("batch").attr("aws_batch_job_queue", "this", "name"),
        "batch.job_definition": p.call("batch").attr("aws_batch_job_definition", "this", "name"),
    }


def test_production_names_are_luigi_cfg_defaults():
    cfg = luigi_cfg()
    for setting, deployed in deployed_names("prod").items():
        section, option = setting.split(".")
        assert deployed == cfg.get(section, option), (
            f"production {setting} is {deployed!r} but luigi.cfg [{section}] {option} is "
            f"{cfg.get(section, option)!r}"
        )


def test_staging_names_differ_and_reach_the_worker_through_the_cloud_override():
    assert deployed_names("staging")["ecs.cluster"] != deployed_names("prod")["ecs.cluster"]
    assert deployed_names("staging")["ecs.container_name"] == luigi_cfg().get(
        "ecs", "container_name"
    )
    cloud = configparser.ConfigParser(interpolation=None)
    cloud.read(CLOUD_CFG)
    # setting in the override => the worker environment variable and what Terraform gives it
    expected = {
        ("ecs", "cluster"): ("PIPELINE_ECS_CLUSTER", "${module.ecs_cluster.name}"),
        ("ecs", "task_definition"): (
            "PIPELINE_ECS_TASK_DEFINITION",
            "${module.estimator_task.family}",
        ),
        ("ecs", "security_groups"): (
            "PIPELINE_ECS_SECURITY_GROUPS",
            "${module.network.estimator_security_group_id}",
        ),
        ("batch", "job_queue"): ("PIPELINE_BATCH_JOB_QUEUE", "${module.batch.job_queue_name}"),
        ("batch", "job_definition"): (
            "PIPELINE_BATCH_JOB_DEFINITION",
            "${module.batch.job_definition_name}",
        ),
        ("core", "scheduler_host"): (
            "PIPELINE_SCHEDULER_HOST",
            "${module.luigid.hostname}",
        ),
    }  # fmt: skip
    environment = worker_environment()
    for (section, option), (variable, reference) in expected.items():
        assert cloud.get(section, option) == f"${{{variable}}}", f"[{section}] {option}"
        assert environment[variable] == reference, f"worker {variable}"
    assert cloud.get("ecs", "container_name") == luigi_cfg().get("ecs", "container_name")
    # the modules' outputs are what their names say
    outputs = {
        ("ecs_cluster", "name"): "${aws_ecs_cluster.this.name}",
        ("task", "family"): "${aws_ecs_task_definition.this.family}",
        ("batch", "job_queue_name"): "${aws_batch_job_queue.this.name}",
        ("batch", "job_definition_name"): "${aws_batch_job_definition.this.name}",
    }
    for (module, output), value in outputs.items():
        assert (
            Module(REPO / "terraform/modules" / module).labelled("output")[output]["value"] == value
        )


def worker_environment() -> dict[str, str]:
    return Module(REPO / "terraform/modules/platform").labelled("module")["worker_task"][
        "environment"
    ]


def test_every_variable_of_the_cloud_override_is_set_on_the_worker():
    cloud = configparser.ConfigParser(interpolation=None)
    cloud.read(CLOUD_CFG)
    values = " ".join(v for section in cloud.sections() for v in cloud[section].values())
    needed = set(re.findall(r"\$\{([A-Z0-9_]+)\}", values))
    assert len(needed) >= 8
    environment = worker_environment()
    missing = needed - set(environment)
    assert not missing, f"docker/luigi.cloud.cfg uses {sorted(missing)}; the worker lacks them"
    assert environment["LUIGI_CONFIG_PATH"] == "/app/deploy/luigi.cfg"


def test_the_cloud_override_is_read_by_the_pipeline():
    """luigi expands ${VARIABLE} from the environment: these are the settings the executors
    read in the worker container (a subprocess, so this session's config stays as it is)."""
    pytest.importorskip("luigi", reason="needs the pipeline's dependencies (.venv)")
    values = {
        "PIPELINE_SCHEDULER_HOST": "luigid.survey-pipeline-staging.internal",
        "PIPELINE_SCHEDULER_PORT": "8082",
        "PIPELINE_ECS_CLUSTER": "survey-pipeline-staging",
        "PIPELINE_ECS_TASK_DEFINITION": "survey-pipeline-staging-estimator",
        "PIPELINE_ECS_LAUNCH_TYPE": "",
        "PIPELINE_ECS_CAPACITY_PROVIDER": "FARGATE_SPOT",
        "PIPELINE_ECS_SUBNETS": "subnet-0aaaaaaaaaaaaaaaa,subnet-0bbbbbbbbbbbbbbbb",
        "PIPELINE_ECS_SECURITY_GROUPS": "sg-0cccccccccccccccc",
        "PIPELINE_BATCH_JOB_QUEUE": "survey-pipeline-staging",
        "PIPELINE_BATCH_JOB_DEFINITION": "survey-pipeline-staging-estimator",
        "PIPELINE_ESTIMATOR_LOG_GROUP": "/survey-pipeline-staging/estimator",
    }
    probe = """
import json
from pipeline import config
print(json.dumps({
    "cluster": config.get("ecs", "cluster"),
    "subnets": config.get_list("ecs", "subnets"),
    "container": config.get("ecs", "container_name"),
    "launch_type": config.get("ecs", "launch_type", "FARGATE"),
    "capacity_provider": config.get("ecs", "capacity_provider"),
    "log_group": config.get("batch", "log_group"),
    "host": config.get("core", "scheduler_host"),
    "port": config.get("core", "scheduler_port"),
    "executor": config.executor_name(),
}))
"""
    env = {**os.environ, **values, "LUIGI_CONFIG_PATH": str(CLOUD_CFG)}
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=120, check=True,
    )  # fmt: skip
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen == {
        "cluster": "survey-pipeline-staging",
        "subnets": values["PIPELINE_ECS_SUBNETS"].split(","),
        "container": "estimator",
        "launch_type": "",
        "capacity_provider": "FARGATE_SPOT",
        "log_group": "/survey-pipeline-staging/estimator",
        "host": "luigid.survey-pipeline-staging.internal",
        "port": "8082",
        "executor": "ecs",
    }


def test_luigid_listens_on_luigi_cfg_port():
    port = luigi_cfg().getint("core", "scheduler_port")
    luigid = Module(REPO / "terraform/modules/luigid")
    assert luigid.labelled("variable")["port"]["default"] == port
    for env in ("prod", "staging", "branch"):
        assert platform(env).call("luigid").values["port"] == port  # nobody overrides it
    main = (luigid.path / "main.tf").read_text()
    assert '"--port", tostring(var.port)' in main
    assert '--state-path", "/var/lib/luigid/state.pickle"' in main
    assert 'container_path  = "/var/lib/luigid"' in main  # the state is on EFS
    assert worker_environment()["PIPELINE_SCHEDULER_PORT"] == "${tostring(module.luigid.port)}"
    assert f"EXPOSE {port}" in (REPO / "docker/pipeline.Dockerfile").read_text()


def test_schedules_start_an_existing_task_definition_with_real_commands():
    pytest.importorskip("luigi", reason="parses the commands with the real CLI (.venv)")
    from pipeline.cli import build_parser

    platform_module = Module(REPO / "terraform/modules/platform")
    calls = platform_module.labelled("module")
    schedule_calls = {n: c for n, c in calls.items() if c["source"] == "../schedules"}
    assert schedule_calls
    for name, call in schedule_calls.items():
        target = re.fullmatch(r"\$\{module\.(\w+)\.arn\}", call["task_definition_arn"])
        assert target, f"module {name} must target a task definition module's arn"
        task = target.group(1)
        assert calls[task]["source"] == "../task", f"{task} is not a task definition"
        assert call["container_name"] == f"${{module.{task}.container_name}}"
        assert call["cluster_arn"] == "${module.ecs_cluster.arn}"
    task_outputs = Module(REPO / "terraform/modules/task").labelled("output")
    assert task_outputs["arn"]["value"] == "${aws_ecs_task_definition.this.arn}"
    schedules_main = Module(REPO / "terraform/modules/schedules").resource("aws_scheduler_schedule")
    ecs = schedules_main["target"][0]["ecs_parameters"][0]
    assert ecs["task_definition_arn"] == "${var.task_definition_arn}"

    # Both commands parse with the real CLI.
    for env in ("prod", "staging"):
        scope = platform(env)
        schedules = platform_module.labelled("module")["schedules"]["schedules"]
        assert set(schedules) == {"daily-run", "reaper"}
        assert scope.resolve(schedules["reaper"]["expression"]) == "rate(5 minutes)"
        assert schedules["reaper"]["command"] == ["pipeline", "reap"]
        build_parser().parse_args(["reap"])
        run = scope.module.locals()["run_command"]
        run = run.replace("${module.luigid.scheduler_url}", "http://luigid.example.internal:8082")
        fetch, _, pipeline_run = run.partition(" && ")
        assert shlex.split(fetch) == ["fetch-raw", "$PIPELINE_RAW_URI"]
        argv = shlex.split(pipeline_run)
        assert argv[:3] == ["exec", "pipeline", "run"]
        assert argv[argv.index("--run-date") + 1] == "$(date -u +%F)"
        argv[argv.index("--run-date") + 1] = "2026-11-22"
        args = build_parser().parse_args(argv[2:])
        assert (args.executor, args.scheduler_url) == ("ecs", "http://luigid.example.internal:8082")
    assert (
        Module(REPO / "terraform/modules/luigid").labelled("output")["scheduler_url"]["value"]
        == "${local.scheduler_url}"
    )


def test_every_log_group_a_task_logs_to_exists():
    for module in all_modules():
        text = module.text()
        declared = {
            name for t, name, _ in module.typed("resource") if t == "aws_cloudwatch_log_group"
        }
        for name in re.findall(r"aws_cloudwatch_log_group\.(\w+)", text):
            assert name in declared, f"{module.name} refers to a log group {name} it lacks"
        for group in re.findall(r"awslogs-group\s*=\s*(\S+)", text):
            if group.startswith("aws_cloudwatch_log_group."):
                continue
            variable = re.fullmatch(r"var\.(\w+)", group)
            assert variable, (
                f"{module.name}: awslogs-group {group} is neither a log group nor a variable"
            )
            for caller in all_modules():
                for call in caller.labelled("module").values():
                    if call["source"] != f"../{module.name}":
                        continue
                    source = re.fullmatch(
                        r"\$\{module\.(\w+)\.log_group_name\}", call[variable.group(1)]
                    )
                    assert source, (
                        f"{caller.name} must pass a task module's log group to {module.name}"
                    )
                    assert caller.labelled("module")[source.group(1)]["source"] == "../task"
    task_outputs = Module(REPO / "terraform/modules/task").labelled("output")
    assert task_outputs["log_group_name"]["value"] == "${aws_cloudwatch_log_group.this.name}"


def test_log_group_names_given_to_iam_are_the_ones_created():
    calls = Module(REPO / "terraform/modules/platform").labelled("module")
    assert calls["iam"]["log_group_names"] == "${local.log_groups}"
    for task, key in (("estimator_task", "estimator"), ("worker_task", "worker")):
        assert calls[task]["log_group_name"] == f"${{local.log_groups.{key}}}"
    assert calls["luigid"]["log_group_name"] == "${local.log_groups.luigid}"


def test_names_resolve_for_every_environment():
    for env in ("prod", "staging", "branch"):
        names = deployed_names(env)
        assert all(isinstance(v, str) and "${" not in v for v in names.values()), names
    with pytest.raises(Unresolved):
        platform("prod").resolve("${module.ecs_cluster.name}")


def test_luigid_override_turns_task_history_off_without_a_database():
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(LUIGID_CFG)
    assert cfg.get("scheduler", "record_task_history") == "false"
    luigid_main = (REPO / "terraform/modules/luigid/main.tf").read_text()
    assert '"/app/deploy/luigid.cfg"' in luigid_main
    assert "LUIGID_DB_SECRET" in luigid_main


def test_fargate_spot_reaches_the_executor_only_when_chosen():
    """estimator_fargate_spot => [ecs] capacity_provider = FARGATE_SPOT in the worker
    (docker/luigi.cloud.cfg), which the cluster offers; off by default."""
    platform_module = Module(REPO / "terraform/modules/platform")
    variable = platform_module.labelled("variable")["estimator_fargate_spot"]
    assert variable["default"] is False
    assert 'var.estimator_capacity == "FARGATE"' in variable["validation"][0]["condition"]
    assert worker_environment()["PIPELINE_ECS_CAPACITY_PROVIDER"] == (
        '${var.estimator_fargate_spot ? "FARGATE_SPOT" : ""}'
    )
    cloud = configparser.ConfigParser(interpolation=None)
    cloud.read(CLOUD_CFG)
    assert cloud.get("ecs", "capacity_provider") == "${PIPELINE_ECS_CAPACITY_PROVIDER}"
    cluster = Module(REPO / "terraform/modules/ecs_cluster")
    providers = cluster.resource("aws_ecs_cluster_capacity_providers")["capacity_providers"]
    assert "FARGATE_SPOT" in providers
    assert platform("prod").values["estimator_fargate_spot"] is False
    assert platform("branch").values["estimator_fargate_spot"] is True
    assert "capacity_provider = " in platform_module.labelled("output")["luigi_cfg"]["value"]
