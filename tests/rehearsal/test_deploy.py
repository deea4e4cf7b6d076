"""A rehearsal of the deploy: the `make` calls of jenkins/Jenkinsfile's stages, read from
the Jenkinsfile itself (its ``sh`` steps, with the environment its ``environment`` blocks
give), run for a branch build and for ``main`` in a copy of the repository, with
terraform, docker and aws replaced by recording shims (tests/rehearsal/shims) that refuse
any call our tools would reject. Then the recorded argv are checked: well-formed, the
commit is the pushed tag and the planned ``image_tag``, which the task definitions use;
each stack has its name and its own state; the stages run in the Jenkinsfile's order,
production after the approval. ``make cloud-run`` and ``make roll-luigid`` are run the
same way."""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.infra import tf
from tests.rehearsal.shims import REGISTRY, Call, Shims

REPO = tf.REPO
COMMIT = hashlib.sha1(b"rehearsal").hexdigest()  # what Jenkins gives as GIT_COMMIT
BRANCH = "feature/x"
IMAGES = ("pipeline", "estimator")
# What a checkout holds that the deploy targets read.
WORKSPACE_PARTS = ("Makefile", "jenkins", "terraform", "docker")


# ------------------------------------------------------------------- reading the Jenkinsfile


def _string_end(text: str, i: int) -> int:
    quote = text[i]
    i += 1
    while i < len(text) and text[i] != quote:
        i += 2 if text[i] == "\\" else 1
    return i + 1


def blocks(body: str) -> list[tuple[str, str]]:
    """The ``header { ... }`` blocks at the top level of a Groovy block's body, as
    (header, inner text): ``stage('Images')``, ``environment``, ``when``..."""
    found = []
    i, start = 0, 0
    while i < len(body):
        char = body[i]
        if char in "'\"":
            i = _string_end(body, i)
        elif body.startswith("//", i):
            i = body.find("\n", i) if "\n" in body[i:] else len(body)
            start = i
        elif char == "\n" or char == "}":
            i += 1
            start = i
        elif char == "{":
            header = body[start:i].strip()
            depth, j = 1, i + 1
            while depth:
                if body[j] in "'\"":
                    j = _string_end(body, j)
                    continue
                depth += {"{": 1, "}": -1}.get(body[j], 0)
                j += 1
            found.append((header, body[i + 1 : j - 1]))
            i = start = j
        else:
            i += 1
    return found


def block(body: str, header: str) -> str | None:
    return next((inner for head, inner in blocks(body) if head == header), None)


def assignments(body: str | None) -> dict[str, str]:
    """``NAME = expression`` lines of an ``environment`` block."""
    return dict(re.findall(r"^\s*([A-Za-z_]\w*)\s*=\s*(.+?)\s*$", body or "", re.M))


@dataclass
class Stage:
    name: str
    when: str | None
    environment: dict[str, str]
    approval: str | None
    steps: list[str]


def jenkinsfile(path: Path) -> tuple[dict[str, str], list[Stage]]:
    """The pipeline's environment and its stages in order."""
    pipeline = block(path.read_text(), "pipeline")
    assert pipeline is not None, f"{path}: no pipeline {{ }} block"
    stages = []
    for header, body in blocks(block(pipeline, "stages") or ""):
        name = re.fullmatch(r"stage\('([^']+)'\)", header)
        assert name, f"unexpected block {header!r} in stages"
        approval = block(body, "input")
        stages.append(
            Stage(
                name=name.group(1),
                when=block(body, "when"),
                environment=assignments(block(body, "environment")),
                approval=(re.search(r"message\s+'([^']*)'", approval) or [None, "?"])[1]
                if approval is not None
                else None,
                steps=re.findall(r"\bsh\s+'([^']+)'", block(body, "steps") or ""),
            )
        )
    return assignments(block(pipeline, "environment")), stages


def groovy(expression: str, env: dict[str, str]) -> str:
    """The value Jenkins gives an ``environment`` entry; only the forms our Jenkinsfiles
    use (a new form fails here: teach it)."""
    if match := re.fullmatch(r"credentials\('([^']+)'\)", expression):
        return f"rehearsal-secret-of-{match.group(1)}"
    if match := re.fullmatch(r"'([^'\\$]*)'", expression):
        return match.group(1)
    if match := re.fullmatch(r'"([^"\\]*)"', expression):

        def interpolate(m: re.Match[str]) -> str:
            inner = " ".join(m.group(1).split())
            if ref := re.fullmatch(r"env\.(\w+)", inner):
                return env[ref.group(1)]
            if cond := re.fullmatch(r"env\.(\w+) == '([^']*)' \? '([^']*)' : '([^']*)'", inner):
                name, value, yes, no = cond.groups()
                return yes if env[name] == value else no
            raise AssertionError(f"the rehearsal cannot evaluate ${{{inner}}}: teach groovy()")

        return re.sub(r"\$\{([^}]*)\}", interpolate, match.group(1))
    raise AssertionError(f"the rehearsal cannot evaluate {expression!r}: teach groovy()")


def when_holds(condition: str | None, branch_name: str) -> bool:
    """A stage's ``when``: only ``branch 'X'`` and ``not { ... }``, as our Jenkinsfile has."""
    text = " ".join((condition or "").split())
    if not text:
        return True
    if match := re.fullmatch(r"branch '([^']+)'", text):
        return fnmatch.fnmatchcase(branch_name, match.group(1))
    if match := re.fullmatch(r"not \{ (.*) \}", text):
        return not when_holds(match.group(1), branch_name)
    raise AssertionError(f"the rehearsal cannot evaluate when {{ {text} }}: teach when_holds()")


def deploy_targets(makefile: Path) -> set[str]:
    """The rules of the Makefile's "images, infrastructure, deploy" section."""
    text = makefile.read_text()
    section = text[text.index("# --- images, infrastructure, deploy") :]
    return set(re.findall(r"^([A-Za-z0-9][\w.-]*)\s*:(?!=)", section, re.M))


def make_goals(step: str) -> list[str]:
    words = shlex.split(step)
    assert words[0] == "make", step
    return [w for w in words[1:] if "=" not in w and not w.startswith("-")]


# ------------------------------------------------------------------------- the rehearsal


@dataclass
class StageRun:
    name: str
    step: str  # as the Jenkinsfile writes it
    command: str  # as the shell runs it: the step's $VARIABLES resolved
    returncode: int
    output: str


@dataclass
class Build:
    branch_name: str
    workspace: Path
    shims: Shims
    ran: list[StageRun] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    def report(self) -> str:
        return "\n".join(
            f"--- stage {run.name}: {run.command} (exit {run.returncode})\n{run.output[-4000:]}"
            for run in self.ran
        )


def workspace(root: Path) -> Path:
    """A copy of the checkout's deploy files, as Jenkins' workspace (no .terraform, no
    saved plans): whatever the rehearsal leaves stays there."""
    ws = root / "workspace"
    ws.mkdir()
    ignore = shutil.ignore_patterns(".terraform", "tfplan-*", "*.tfstate*", "__pycache__")
    for part in WORKSPACE_PARTS:
        source = REPO / part
        if source.is_dir():
            shutil.copytree(source, ws / part, ignore=ignore)
        else:
            shutil.copy2(source, ws / part)
    return ws


def run_make(ws: Path, shims: Shims, command: str, **env: str) -> subprocess.CompletedProcess[str]:
    """A shell step as Jenkins' ``sh`` runs it (``sh -xe``), the shims first on PATH."""
    return subprocess.run(
        ["sh", "-xe", "-c", command],
        cwd=ws,
        env=shims.env(**{"GIT_COMMIT": COMMIT, **env}),
        capture_output=True,
        text=True,
        timeout=180,
    )


def rehearse(branch_name: str, root: Path) -> Build:
    """Every deploy stage jenkins/Jenkinsfile runs for ``branch_name``, in its order, each
    ``sh`` step with the environment the Jenkinsfile gives it; an ``input`` approval is
    recorded (as a ``jenkins input`` call) and granted; a failing step ends the build."""
    ws = workspace(root)
    build = Build(branch_name, ws, Shims(root / "shims"))
    pipeline_env, stages = jenkinsfile(ws / "jenkins" / "Jenkinsfile")
    env = {"BRANCH_NAME": branch_name, "GIT_COMMIT": COMMIT, "WORKSPACE": str(ws)}
    for name, expression in pipeline_env.items():
        env[name] = groovy(expression, env)
    deploy = deploy_targets(ws / "Makefile")
    for stage in stages:
        if not when_holds(stage.when, branch_name):
            build.skipped[stage.name] = "when"
            continue
        if not all(set(make_goals(step)) <= deploy for step in stage.steps):
            build.skipped[stage.name] = "not a deploy stage"
            continue
        stage_env = dict(env)
        for name, expression in stage.environment.items():
            stage_env[name] = groovy(expression, stage_env)
        if stage.approval is not None:
            build.shims.note("jenkins", "input", stage.approval)
        for step in stage.steps:
            result = run_make(ws, build.shims, step, **stage_env)
            command = re.sub(r"\$\{?(\w+)\}?", lambda m, e=stage_env: e.get(m[1], ""), step)
            output = result.stdout + result.stderr
            build.ran.append(StageRun(stage.name, step, command, result.returncode, output))
            if result.returncode != 0:
                return build
    return build


@pytest.fixture(scope="module")
def branch_build(tmp_path_factory: pytest.TempPathFactory) -> Build:
    return rehearse(BRANCH, tmp_path_factory.mktemp("branch-build"))


@pytest.fixture(scope="module")
def main_build(tmp_path_factory: pytest.TempPathFactory) -> Build:
    return rehearse("main", tmp_path_factory.mktemp("main-build"))


# ------------------------------------------------------------------------------- reading


def stack_of_branch(branch: str) -> str:
    result = subprocess.run(
        [sys.executable, "jenkins/branch_stacks.py", "name", branch],
        cwd=REPO, capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    return result.stdout.strip()


def stack_calls(shims: Shims, stack: str) -> list[Call]:
    return [
        c for c in shims.calls("terraform") if c.env.get("TF_DATA_DIR") == f".terraform/{stack}"
    ]


def pushed(shims: Shims) -> list[str]:
    return [c.args[0] for c in shims.calls("docker", "push")]


def index(calls: list[Call], call: Call) -> int:
    return next(i for i, c in enumerate(calls) if c is call)


def backend_key(env: str) -> str:
    text = (tf.ENVS / f"{env}.backend.hcl").read_text()
    match = re.search(r'^key\s*=\s*"([^"]+)"', text, re.M)
    assert match, f"{env}.backend.hcl has no key"
    return match.group(1)


def task_images(plan: Call) -> dict[str, str]:
    """``module "<name>"`` of terraform/modules/platform => the image (``<repository>:<tag>``,
    without the registry host) its task, service or job definition gets, for the
    variables of this recorded ``terraform plan``: followed through the HCL from the
    root's ``image_tag`` to ``local.images`` and the ECR module's repository names."""
    root = tf.root()
    values = {k: v.get("default") for k, v in root.labelled("variable").items() if "default" in v}
    for path in plan.values("-var-file"):
        values.update(tf.parse((tf.STACK / path).resolve()))
    values.update(v.split("=", 1) for v in plan.values("-var"))
    assert root.labelled("module")["platform"]["image_tag"] == "${var.image_tag}"
    platform = tf.Scope(root, values).call("platform")
    assert platform.values["image_tag"] == plan.var("image_tag")
    ecr = platform.call("ecr")
    repository = ecr.module.resource("aws_ecr_repository")
    assert repository["for_each"] == "${toset(var.images)}"
    urls = ecr.module.labelled("output")["repository_urls"]["value"]
    assert "image => repo.repository_url" in urls and "aws_ecr_repository.this" in urls
    images = platform.module.locals()["images"]
    found = {}
    for name, body in platform.module.labelled("module").items():
        if "image" not in body:
            continue
        local = re.fullmatch(r"\$\{local\.images\.(\w+)\}", body["image"])
        assert local, f"module {name}: image {body['image']!r} is not one of local.images"
        expr = re.fullmatch(r'\$\{module\.ecr\.repository_urls\["(\w+)"\]\}:(.+)', images[local[1]])
        assert expr, f"local.images.{local[1]} = {images[local[1]]!r}: not <ECR url>:<tag>"
        assert expr[1] in ecr.values["images"], f"no registry for image {expr[1]!r}"
        repo = ecr.resolve(repository["name"].replace("${each.key}", expr[1]))
        found[name] = f"{repo}:{platform.resolve(expr[2])}"
        child = tf.Module((platform.module.path / body["source"]).resolve())
        assert re.search(r"=\s*var\.image\b", child.text()), f"{child.name} ignores var.image"
    return found


# ------------------------------------------------------------------------------ a branch


def test_a_branch_build_runs_the_jenkinsfile_deploy_stages_with_well_formed_calls(branch_build):
    assert [(run.name, run.command) for run in branch_build.ran] == [
        ("Images", "make images push-images ENV=branch"),
        ("Plan", "make tf-plan ENV=branch"),
        ("Deploy branch stack", "make tf-apply ENV=branch"),
    ], branch_build.report()
    failed = [run for run in branch_build.ran if run.returncode]
    assert not failed, branch_build.report()
    assert not branch_build.shims.refusals(), branch_build.report()
    assert {"Deploy staging", "Plan production", "Deploy production"} <= {
        name for name, why in branch_build.skipped.items() if why == "when"
    }
    # Only stages that lint, test or check the programs are left out: every other stage
    # deploys and is rehearsed here.
    assert {n for n, why in branch_build.skipped.items() if why != "when"} <= {
        "Lint", "Test", "Regress",
    }  # fmt: skip


def test_a_branch_stack_is_named_from_its_branch_and_keeps_its_own_state(branch_build):
    stack = stack_of_branch(BRANCH)
    assert stack.startswith("sp-") and stack != stack_of_branch("feature-x")
    calls = branch_build.shims.calls("terraform")
    assert calls and calls == stack_calls(branch_build.shims, stack), "another TF_DATA_DIR"
    assert {c.chdir for c in calls} == {"terraform/stack"}
    for init in branch_build.shims.calls("terraform", "init"):
        assert init.values("-backend-config") == [
            "../envs/branch.backend.hcl",
            f"key=survey-pipeline/branches/{stack}/terraform.tfstate",
        ]
        assert init.has("-reconfigure")
    with_vars = [c for c in calls if c.values("-var")]
    assert {c.command for c in with_vars} == {"apply", "plan"}
    for call in with_vars:
        assert call.var("name") == stack and call.var("branch") == BRANCH
        assert call.values("-var-file") == ["../envs/staging.tfvars", "../envs/branch.tfvars"]
    assert {ref.rsplit("/", 2)[1] for ref in pushed(branch_build.shims)} == {stack}


def test_a_branch_stack_creates_its_registries_before_the_push(branch_build):
    calls = branch_build.shims.calls()
    targeted = [c for c in calls if c.tool == "terraform" and c.values("-target")]
    assert len(targeted) == 1, [c.argv for c in targeted]
    registries = targeted[0]
    assert registries.command == "apply" and registries.has("-auto-approve")
    assert registries.values("-target") == ["module.platform.module.ecr"]
    assert registries.var("image_tag") == COMMIT
    first_push = next(c for c in calls if c.tool == "docker" and c.command == "push")
    assert index(calls, registries) < index(calls, first_push)


def test_the_pushed_tag_is_the_planned_image_tag_is_the_commit(branch_build):
    shims = branch_build.shims
    stack = stack_of_branch(BRANCH)
    builds = [c.value("--tag") for c in shims.calls("docker", "build")]
    assert builds == [f"survey-pipeline/{image}:{COMMIT}" for image in IMAGES]
    assert sorted(pushed(shims)) == sorted(f"{REGISTRY}/{stack}/{i}:{COMMIT}" for i in IMAGES)
    assert [c.args for c in shims.calls("docker", "login")] == [[REGISTRY]]
    (plan,) = shims.calls("terraform", "plan")
    assert plan.var("image_tag") == COMMIT
    assert plan.value("-out") == f"tfplan-{stack}"
    applied = [c for c in shims.calls("terraform", "apply") if c.args]
    assert [c.args for c in applied] == [[f"tfplan-{stack}"]]
    # The push skipped nothing: describe-images said the tag was not there yet.
    looked_up = shims.calls("aws", "ecr describe-images")
    assert sorted(c.value("--repository-name") for c in looked_up) == sorted(
        f"{stack}/{image}" for image in IMAGES
    )
    assert {c.value("--image-ids") for c in looked_up} == {f"imageTag={COMMIT}"}


@pytest.mark.parametrize("build_name", ["branch_build", "main_build"])
def test_the_task_definitions_run_the_images_that_were_pushed(build_name, request):
    build: Build = request.getfixturevalue(build_name)
    refs = {ref.removeprefix(f"{REGISTRY}/") for ref in pushed(build.shims)}
    plans = build.shims.calls("terraform", "plan")
    assert plans, build.report()
    for plan in plans:
        images = task_images(plan)
        # Every place a container image is named: the estimator and worker task
        # definitions, the Batch job definition, luigid's service.
        assert {"estimator_task", "worker_task", "batch", "luigid"} <= set(images)
        assert set(images.values()) <= refs, (plan.var("image_tag"), images, refs)
        assert {image.rsplit(":", 1)[1] for image in images.values()} == {COMMIT}


@pytest.mark.parametrize("build_name", ["branch_build", "main_build"])
def test_the_build_leaves_no_saved_plan_and_writes_no_state_into_the_workspace(build_name, request):
    build: Build = request.getfixturevalue(build_name)
    assert build.ran and not any(run.returncode for run in build.ran), build.report()
    assert not list(build.workspace.rglob("tfplan-*"))
    assert not list(build.workspace.rglob("*.tfstate"))
    assert not list(build.workspace.glob("-*")), "a shell redirect wrote a file"


# ---------------------------------------------------------------------------------- main


def test_main_runs_staging_then_the_approval_then_production(main_build):
    assert [(run.name, run.command) for run in main_build.ran] == [
        ("Images", "make images push-images ENV=staging"),
        ("Plan", "make tf-plan ENV=staging"),
        ("Deploy staging", "make tf-apply roll-luigid ENV=staging"),
        ("Plan production", "make push-images tf-plan ENV=prod"),
        ("Deploy production", "make tf-apply roll-luigid ENV=prod"),
    ], main_build.report()
    assert not [run for run in main_build.ran if run.returncode], main_build.report()
    assert not main_build.shims.refusals(), main_build.report()
    assert main_build.skipped.get("Deploy branch stack") == "when"

    calls = main_build.shims.calls()
    staging, prod = "survey-pipeline-staging", "survey-pipeline"

    def only(tool: str, command: str, stack: str, service: str = "") -> Call:
        found = [
            c
            for c in calls
            if c.tool == tool and c.command == command
            and (c.env.get("TF_DATA_DIR") == f".terraform/{stack}" or c.value("--cluster") == stack)
            and (not service or service in (c.value("--service"), c.value("--services")))
        ]  # fmt: skip
        assert len(found) == 1, (tool, command, stack, [c.argv for c in found])
        return found[0]

    def rolled(stack: str) -> list[Call]:
        """luigid restarted and waited for, then the assistant beside it."""
        return [
            only("aws", command, stack, service)
            for service in ("luigid", "assistant")
            for command in ("ecs update-service", "ecs wait services-stable")
        ]

    (approval,) = [c for c in calls if c.tool == "jenkins"]
    order = [
        only("terraform", "plan", staging),
        only("terraform", "apply", staging),
        *rolled(staging),
        only("terraform", "plan", prod),
        approval,
        only("terraform", "apply", prod),
        *rolled(prod),
    ]
    positions = [index(calls, c) for c in order]
    assert positions == sorted(positions), [c.argv for c in order]
    # Nothing reaches production before the approval but its images and its plan.
    before = calls[: index(calls, approval)]
    assert not [c for c in before if c.tool == "terraform" and c.command == "apply"
                and c.env.get("TF_DATA_DIR") == f".terraform/{prod}"]  # fmt: skip
    for stack in (staging, prod):
        for service in ("luigid", "assistant"):
            update = only("aws", "ecs update-service", stack, service)
            assert update.has("--force-new-deployment")
            wait = only("aws", "ecs wait services-stable", stack, service)
            assert wait.values("--services") == [service]


def test_main_deploys_the_commit_to_staging_and_production_each_from_its_own_state(main_build):
    shims = main_build.shims
    assert sorted(pushed(shims)) == sorted(
        f"{REGISTRY}/{stack}/{image}:{COMMIT}"
        for stack in ("survey-pipeline-staging", "survey-pipeline")
        for image in IMAGES
    )
    # Production and staging registries are created by hand (docs/deploy.md, step 3).
    assert not [c for c in shims.calls("terraform") if c.values("-target")]
    keys = {}
    for env, stack in (("staging", "survey-pipeline-staging"), ("prod", "survey-pipeline")):
        calls = stack_calls(shims, stack)
        inits = [c for c in calls if c.command == "init"]
        assert inits and {tuple(c.values("-backend-config")) for c in inits} == {
            (f"../envs/{env}.backend.hcl",)
        }
        keys[env] = backend_key(env)
        (plan,) = [c for c in calls if c.command == "plan"]
        assert plan.values("-var-file") == [f"../envs/{env}.tfvars"]
        assert plan.var("image_tag") == COMMIT and plan.var("name") is None
        assert plan.value("-out") == f"tfplan-{stack}"
        (apply,) = [c for c in calls if c.command == "apply"]
        assert apply.args == [f"tfplan-{stack}"] and not apply.values("-var")
    keys["branch"] = f"survey-pipeline/branches/{stack_of_branch(BRANCH)}/terraform.tfstate"
    assert len(set(keys.values())) == 3, keys
    assert keys["prod"] == "survey-pipeline/prod/terraform.tfstate"
    assert keys["staging"] == "survey-pipeline/staging/terraform.tfstate"


# ---------------------------------------------------------------------- by hand: run, roll


def test_cloud_run_starts_the_worker_for_the_date(tmp_path, shims):
    ws = workspace(tmp_path)
    outputs = tmp_path / "outputs.json"
    # terraform's manual_run_task_input: the schedule's command, its date a placeholder.
    platform = tf.Module(tf.MODULES / "platform")
    run_command = platform.locals()["run_command"].replace(
        "${module.luigid.scheduler_url}", "http://luigid.survey-pipeline.internal:8082"
    )
    replace = re.search(
        r'replace\(local\.run_command, ("(?:[^"\\]|\\.)*"), "(\w+)"\)',
        (tf.MODULES / "platform" / "outputs.tf").read_text(),
    )
    assert replace, "manual_run_task_input no longer replaces the date of local.run_command"
    date_expr, placeholder = json.loads(replace.group(1)), replace.group(2)
    assert date_expr in run_command
    request = {
        "cluster": "survey-pipeline",
        "taskDefinition": "survey-pipeline-worker",
        "overrides": {
            "containerOverrides": [
                {
                    "name": "worker",
                    "command": ["sh", "-c", run_command.replace(date_expr, placeholder)],
                }
            ]
        },
    }
    text = json.dumps(request).replace("&", "\\u0026")  # as terraform's jsonencode writes it
    outputs.write_text(json.dumps({"manual_run_task_input": text}))

    result = run_make(
        ws, shims, "make cloud-run ENV=prod RUN_DATE=2026-12-01", SHIM_TF_OUTPUTS=str(outputs)
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert not shims.refusals()
    init, output = shims.calls("terraform")
    assert init.values("-backend-config") == ["../envs/prod.backend.hcl"]
    assert output.command == "output" and output.has("-raw")
    assert output.args == ["manual_run_task_input"]
    assert {c.env["TF_DATA_DIR"] for c in (init, output)} == {".terraform/survey-pipeline"}
    (run,) = shims.calls("aws", "ecs run-task")
    sent = json.loads(run.value("--cli-input-json"))
    assert sent["cluster"] == "survey-pipeline"
    assert sent["overrides"]["containerOverrides"][0]["command"] == [
        "sh", "-c", run_command.replace(date_expr, "2026-12-01"),
    ]  # fmt: skip
    assert run.value("--query") == "tasks[].taskArn" and run.value("--output") == "text"
    assert "arn:aws:ecs:" in result.stdout

    bad = run_make(ws, shims, "make cloud-run ENV=prod RUN_DATE=2026-12-1")
    assert bad.returncode != 0 and "RUN_DATE must be YYYY-MM-DD" in bad.stderr
    assert len(shims.calls("aws", "ecs run-task")) == 1


def test_roll_luigid_restarts_the_service_terraform_names(tmp_path, shims):
    """luigid first, then the assistant beside it, each waited for before the next."""
    ws = workspace(tmp_path)
    outputs = tmp_path / "outputs.json"
    outputs.write_text(
        json.dumps({"cluster_name": "cluster-from-output", "luigid_service_name": "luigid-svc",
                    "assistant_service_name": "assistant-svc"})
    )  # fmt: skip
    result = run_make(ws, shims, "make roll-luigid ENV=staging", SHIM_TF_OUTPUTS=str(outputs))
    assert result.returncode == 0, result.stdout + result.stderr
    assert not shims.refusals()
    calls = shims.calls()
    assert [(c.tool, c.command) for c in calls] == [
        ("terraform", "init"),
        ("terraform", "output"),
        *[("terraform", "output"), ("aws", "ecs update-service"),
          ("aws", "ecs wait services-stable")] * 2,
    ]  # fmt: skip
    assert calls[0].values("-backend-config") == ["../envs/staging.backend.hcl"]
    outputs_read = [c.args for c in calls if c.command == "output"]
    assert outputs_read == [["cluster_name"], ["luigid_service_name"], ["assistant_service_name"]]
    assert {c.env["TF_DATA_DIR"] for c in calls if c.tool == "terraform"} == {
        ".terraform/survey-pipeline-staging"
    }
    for (update, wait), service in zip(
        ((calls[3], calls[4]), (calls[6], calls[7])), ("luigid-svc", "assistant-svc"), strict=True
    ):
        assert update.argv == [
            "ecs", "update-service", "--cluster", "cluster-from-output", "--service", service,
            "--force-new-deployment",
        ]  # fmt: skip
        assert wait.argv == [
            "ecs", "wait", "services-stable", "--cluster", "cluster-from-output",
            "--services", service,
        ]  # fmt: skip


# ------------------------------------------------------------------------- the registry


def test_push_images_asks_aws_once_and_takes_the_region_from_the_environment(tmp_path, shims):
    ws = workspace(tmp_path)
    # An agent with an instance profile: no CLI configuration, AWS_DEFAULT_REGION set.
    no_config = {"SHIM_AWS_REGION": "", "AWS_DEFAULT_REGION": "eu-central-1"}
    result = run_make(ws, shims, "make images push-images ENV=staging", **no_config)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not shims.refusals()
    registry = REGISTRY.replace("eu-west-1", "eu-central-1")
    assert sorted(pushed(shims)) == sorted(
        f"{registry}/survey-pipeline-staging/{image}:{COMMIT}" for image in IMAGES
    )
    assert len(shims.calls("aws", "sts get-caller-identity")) == 1
    assert not shims.calls("aws", "configure get")

    result = run_make(ws, shims, "make push-images ENV=prod")
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(shims.calls("aws", "configure get")) == 1  # once per make run, not per use
    assert len(shims.calls("aws", "sts get-caller-identity")) == 2


def test_push_images_without_a_region_stops_before_calling_aws(tmp_path, shims):
    ws = workspace(tmp_path)
    result = run_make(ws, shims, "make push-images ENV=staging", SHIM_AWS_REGION="")
    assert result.returncode != 0 and "no AWS region" in result.stderr
    assert not shims.refusals()
    assert not shims.calls("aws", "ecr get-login-password") and not shims.calls("docker")


# ------------------------------------------------------------------- the shims themselves


@pytest.mark.parametrize(
    ("tool", "argv", "why"),
    [
        ("terraform", ["-chdir=terraform/stack", "init", "-input=false", "<commit"], "stray"),
        (
            "terraform",
            [
                "-chdir=terraform/stack",
                "apply",
                "-input=false",
                "-auto-approve",
                "-var",
                "image_tag=",
            ],
            "empty value",
        ),
        ("terraform", ["-chdir=terraform/stack", "import", "x", "y"], "unknown"),
        ("terraform", ["-chdir=terraform/stack", "plan", "-input=false", "-lock=false"], "unknown"),
        ("terraform", ["-chdir=terraform/stack", "plan", "-input=false"], "before terraform init"),
        ("terraform", ["-chdir=terraform/nowhere", "validate"], "no such directory"),
        ("docker", ["run", "x"], "unknown"),
        ("docker", ["tag", "never/built:abc1234", "r.example.com/x:abc1234"], "No such image"),
        ("docker", ["push", "r.example.com/x:latest"], "moving tag"),
        ("aws", ["ecr", "get-login-password", "--region"], "needs a value"),
        ("aws", ["ecr", "get-login-password", "--region", "--x"], "needs a value"),
        ("aws", ["iam", "create-user"], "unknown"),
        ("aws", ["ecs", "run-task", "--cli-input-json", '{"cluster": "c"}'], "taskDefinition"),
    ],
)
def test_the_shims_refuse_malformed_calls(tool, argv, why, shims):
    result = subprocess.run(
        [tool, *argv], cwd=REPO, env=shims.env(TF_DATA_DIR=".terraform/shim-test"),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2 and why in result.stderr, result.stderr
    (call,) = shims.calls()
    assert call.tool == tool and call.argv == argv and why in (call.refused or "")
