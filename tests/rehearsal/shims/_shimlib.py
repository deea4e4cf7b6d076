"""Recording stand-ins for ``terraform``, ``docker`` and ``aws`` (standard library only).

The executables next to this file (``terraform``, ``docker``, ``aws``) run
``main(tool, argv)``. Every call is appended to ``$SHIM_LOG`` as one JSON line (tool,
argv, what was parsed of it, working directory, a few environment variables, and why it
was refused if it was). A call is refused -- exit 2, a message on stderr -- when real
tools would reject it or when it is not one of the calls our Makefile makes: an argument
with a stray ``<`` or ``>`` (a shell redirect gone wrong), an empty argument or value, a
subcommand or flag outside the allow-lists below, a file that is not there, terraform
run before ``init`` or without a required variable, a plan applied from another stack,
``docker tag`` of an image never built, ``docker push`` without a login...

State shared by the calls of one rehearsal (which stacks were initialised, which images
were built, tagged, pushed, which registries logged in) is kept in ``$SHIM_STATE``
(default ``$SHIM_LOG.state``), never in the working tree; the only file a shim writes
there is what the real tool writes too: ``terraform plan -out=FILE``.

What the Makefile reads from the tools is answered: ``aws configure get region``
(``$SHIM_AWS_REGION``, default eu-west-1; empty: unset, exit 1 as the real CLI does),
``aws sts get-caller-identity --query Account --output text`` (``$SHIM_AWS_ACCOUNT``,
default 123456789012), ``aws ecr get-login-password``, ``aws ecr describe-images``
(found only if a shim ``docker push`` pushed it), ``aws ecs run-task`` (a task ARN) and
``terraform output -raw NAME`` (``$SHIM_TF_OUTPUTS``, a JSON file of name => value,
else defaults derived from the stack: see ``DEFAULT_OUTPUTS``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

ACCOUNT = "123456789012"
REGION = "eu-west-1"
LOGIN_PASSWORD = "shim-ecr-password"  # not a secret: what the shim prints

# Environment variables worth keeping with each call (never secrets' values: only
# whether they are set).
RECORDED_ENV = ("TF_DATA_DIR", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE")
PRESENCE_ENV = ("DD_API_KEY", "DD_APP_KEY")


class Refused(Exception):
    """A call the real tool would reject, or that is outside what we allow."""


# ----------------------------------------------------------------------------- log, state


def _log_path() -> Path:
    log = os.environ.get("SHIM_LOG")
    if not log:
        print(
            "rehearsal shim: SHIM_LOG is not set; these are test stand-ins for terraform, "
            "docker and aws (tests/rehearsal/shims), not the real tools",
            file=sys.stderr,
        )
        sys.exit(2)
    return Path(log)


def _state_dir() -> Path:
    path = Path(os.environ.get("SHIM_STATE") or f"{_log_path()}.state")
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def state() -> Any:
    """The shared state, locked for read-modify-write (``aws | docker`` run at once)."""
    directory = _state_dir()
    with (directory / "lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        path = directory / "state.json"
        data = json.loads(path.read_text()) if path.exists() else {}
        yield data
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        tmp.replace(path)


def record(entry: dict[str, Any]) -> None:
    line = json.dumps(entry, sort_keys=True) + "\n"
    fd = os.open(_log_path(), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


# ----------------------------------------------------------------------- generic checks


def check_generic(argv: list[str]) -> None:
    for arg in argv:
        if arg == "":
            raise Refused("an empty argument (a make variable that expanded to nothing?)")
        if "<" in arg or ">" in arg:
            raise Refused(
                f"stray '<' or '>' in argument {arg!r}: a placeholder such as <commit> "
                "left in a command (the shell reads it as a redirect)"
            )


def parse_flags(
    argv: list[str],
    flags: dict[str, str],
    *,
    aliases: dict[str, str] | None = None,
    go_style: bool = False,
) -> tuple[list[tuple[str, str | None]], list[str]]:
    """``argv`` as (flag, value) pairs and positionals. ``flags`` maps each allowed flag to
    ``"bool"``, ``"value"`` or ``"values"`` (one or more values up to the next flag, as the
    AWS CLI takes lists). ``go_style``: terraform's flag package, where ``--x`` equals
    ``-x``, booleans take no separate value and the first positional ends the flags."""
    aliases = aliases or {}
    pairs: list[tuple[str, str | None]] = []
    positional: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if not arg.startswith("-") or arg == "-":
            positional.append(arg)
            continue
        if go_style and positional:
            raise Refused(
                f"flag {arg!r} after the argument {positional[-1]!r}: terraform stops "
                "reading flags at the first argument"
            )
        name, eq, value = arg.partition("=")
        if go_style and name.startswith("--"):
            name = name[1:]
        name = aliases.get(name, name)
        kind = flags.get(name)
        if kind is None:
            raise Refused(f"unknown or unexpected flag {name!r} (allowed here: {sorted(flags)})")
        if kind == "bool":
            if eq and value not in ("true", "false"):
                raise Refused(f"{name} takes true or false, not {value!r}")
            pairs.append((name, value if eq else None))
            continue
        if not eq:
            if i >= len(argv) or (argv[i].startswith("-") and argv[i] != "-"):
                raise Refused(f"{name} needs a value (got {argv[i] if i < len(argv) else 'none'})")
            value = argv[i]
            i += 1
        if value == "":
            raise Refused(f"{name} with an empty value")
        pairs.append((name, value))
        if kind == "values":
            while i < len(argv) and not argv[i].startswith("-"):
                pairs.append((name, argv[i]))
                i += 1
    return pairs, positional


def values_of(pairs: list[tuple[str, str | None]], name: str) -> list[str]:
    return [v for n, v in pairs if n == name and v is not None]


def has(pairs: list[tuple[str, str | None]], name: str) -> bool:
    return any(n == name and v in (None, "true") for n, v in pairs)


# -------------------------------------------------------------- a little HCL (no hcl2)

_TOKEN = re.compile(r'"|#|//|/\*|<<-?[A-Za-z_]\w*\n?')


def skeleton(text: str) -> tuple[str, list[str]]:
    """``text`` with every string literal replaced by ``"S<n>"`` (its raw contents in the
    returned list), comments removed and heredocs blanked: braces and ``=`` left are
    the structure's own."""
    out: list[str] = []
    strings: list[str] = []
    i = 0
    while i < len(text):
        match = _TOKEN.search(text, i)
        if not match:
            out.append(text[i:])
            break
        out.append(text[i : match.start()])
        token = match.group()
        if token == '"':
            end = _string_end(text, match.start())
            strings.append(text[match.start() + 1 : end - 1])
            out.append(f'"S{len(strings) - 1}"')
            i = end
        elif token in ("#", "//"):
            end = text.find("\n", match.start())
            i = len(text) if end < 0 else end
        elif token == "/*":
            end = text.find("*/", match.start())
            i = len(text) if end < 0 else end + 2
        else:  # heredoc
            marker = token.lstrip("<-").strip()
            end = re.compile(rf"^\s*{re.escape(marker)}\s*$", re.M).search(text, match.end())
            stop = len(text) if not end else end.end()
            out.append('"heredoc"' + "\n" * text.count("\n", match.start(), stop))
            i = stop
    return "".join(out), strings


def _string_end(text: str, start: int) -> int:
    """Index after the string literal opening at ``start``, interpolations included."""
    i = start + 1
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2
            continue
        if char == '"':
            return i + 1
        if text.startswith("${", i) or text.startswith("%{", i):
            depth = 0
            i += 2
            while i < len(text):
                if text[i] == '"':
                    i = _string_end(text, i)
                    continue
                if text[i] == "{":
                    depth += 1
                elif text[i] == "}":
                    if depth == 0:
                        break
                    depth -= 1
                i += 1
        i += 1
    return i


def blocks(text: str) -> list[tuple[str, list[str], dict[str, str]]]:
    """Top-level blocks as (type, labels, {attribute: raw value skeleton}) and top-level
    attributes as ("=", [name], {})."""
    skel, strings = skeleton(text)
    found: list[tuple[str, list[str], dict[str, str]]] = []
    depth = 0
    current: tuple[str, list[str], dict[str, str]] | None = None
    for line in skel.splitlines():
        stripped = line.strip()
        if depth == 0:
            head = re.match(r'^([A-Za-z_][\w-]*)((?:\s+"S\d+")*)\s*\{', stripped)
            attr = re.match(r"^([A-Za-z_][\w-]*)\s*=(?!=)", stripped)
            if head:
                labels = [strings[int(n)] for n in re.findall(r'"S(\d+)"', head.group(2))]
                current = (head.group(1), labels, {})
                found.append(current)
            elif attr:
                found.append(("=", [attr.group(1)], {}))
                current = None
        elif depth == 1 and current is not None:
            attr = re.match(r"^([A-Za-z_][\w-]*)\s*=(?!=)\s*(.*)$", stripped)
            if attr:
                value = re.sub(r'"S(\d+)"', lambda m: json.dumps(strings[int(m[1])]), attr[2])
                current[2][attr.group(1)] = value
        depth += sum(line.count(c) for c in "{[(") - sum(line.count(c) for c in "}])")
    return found


def config_blocks(directory: Path) -> list[tuple[str, list[str], dict[str, str]]]:
    return [b for path in sorted(directory.glob("*.tf")) for b in blocks(path.read_text())]


# ------------------------------------------------------------------------------ terraform

TF_SUBCOMMANDS: dict[str, dict[str, str]] = {
    "init": {
        "-input": "bool",
        "-reconfigure": "bool",
        "-backend-config": "value",
        "-no-color": "bool",
    },
    "validate": {"-no-color": "bool", "-json": "bool"},
    "plan": {
        "-input": "bool",
        "-var": "value",
        "-var-file": "value",
        "-target": "value",
        "-out": "value",
        "-no-color": "bool",
        "-lock-timeout": "value",
    },
    "apply": {
        "-input": "bool",
        "-auto-approve": "bool",
        "-var": "value",
        "-var-file": "value",
        "-target": "value",
        "-no-color": "bool",
        "-lock-timeout": "value",
    },
    "destroy": {},  # the same flags as apply: set below
    "output": {"-raw": "bool", "-json": "bool", "-no-color": "bool"},
}
TF_SUBCOMMANDS["destroy"] = TF_SUBCOMMANDS["apply"]
TF_POSITIONAL = {"apply": 1, "output": 1}  # at most; others none
TF_INTERACTIVE = ("init", "plan", "apply", "destroy")  # must say -input=false in CI
TF_TARGET = re.compile(
    r"^(module\.[A-Za-z_][\w-]*(\[[^\]]+\])?\.)*"
    r"(module\.[A-Za-z_][\w-]*(\[[^\]]+\])?|[a-z][\w]*\.[A-Za-z_][\w-]*(\[[^\]]+\])?)$"
)


def _stack_name(data_dir: str, applied: dict[str, Any] | None) -> str:
    if applied and applied.get("vars", {}).get("name"):
        return str(applied["vars"]["name"])
    return Path(data_dir).name


def _tf_json(value: Any) -> str:
    """jsonencode as Terraform writes it (HTML-sensitive characters escaped)."""
    text = json.dumps(value, separators=(",", ":"))
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def default_outputs(stack: str) -> dict[str, str]:
    """What ``terraform output -raw`` answers when ``$SHIM_TF_OUTPUTS`` does not say."""
    run_command = (
        'fetch-raw "$PIPELINE_RAW_URI" && exec pipeline run --run-date __RUN_DATE__ '
        f"--executor ecs --scheduler-url http://luigid.{stack}.internal:8082"
    )
    return {
        "stack_name": stack,
        "cluster_name": stack,
        "luigid_service_name": "luigid",
        "assistant_service_name": "assistant",
        "raw_uri": f"s3://{stack}-work-{ACCOUNT}/raw/",
        "storage_root": f"s3://{stack}-work-{ACCOUNT}/work",
        "scheduler_url": f"http://luigid.{stack}.internal:8082",
        "manual_run_task_input": _tf_json(
            {
                "cluster": stack,
                "taskDefinition": f"{stack}-worker",
                "launchType": "FARGATE",
                "startedBy": "manual-run",
                "networkConfiguration": {
                    "awsvpcConfiguration": {
                        "subnets": ["subnet-0shim"],
                        "securityGroups": ["sg-0shim"],
                        "assignPublicIp": "DISABLED",
                    }
                },
                "overrides": {
                    "containerOverrides": [{"name": "worker", "command": ["sh", "-c", run_command]}]
                },
            }
        ),
    }


def _module_dir(root: Path, address: str) -> Path | None:
    """The directory of ``module.a.module.b`` (None if some module is not called)."""
    directory = root
    for name in re.findall(r"module\.([A-Za-z_][\w-]*)", address):
        calls = {
            labels[0]: attrs
            for kind, labels, attrs in config_blocks(directory)
            if kind == "module" and labels
        }
        if name not in calls or "source" not in calls[name]:
            return None
        directory = (directory / json.loads(calls[name]["source"])).resolve()
    return directory


def terraform(argv: list[str], entry: dict[str, Any]) -> str:
    chdir = Path(".")
    args = list(argv)
    if args and args[0].startswith(("-chdir=", "--chdir=")):
        chdir = Path(args.pop(0).split("=", 1)[1])
        if not chdir.is_dir():
            raise Refused(f"-chdir={chdir}: no such directory (from {os.getcwd()})")
    if any(a.startswith(("-chdir", "--chdir")) for a in args):
        raise Refused("-chdir must come first, before the subcommand")
    if not args:
        raise Refused("no subcommand")
    sub = args.pop(0)
    if sub not in TF_SUBCOMMANDS:
        raise Refused(
            f"unknown or unexpected subcommand {sub!r} (allowed: {sorted(TF_SUBCOMMANDS)})"
        )
    pairs, positional = parse_flags(args, TF_SUBCOMMANDS[sub], go_style=True)
    entry["parsed"] = {"chdir": str(chdir), "subcommand": sub, "flags": pairs, "args": positional}
    if len(positional) > TF_POSITIONAL.get(sub, 0):
        raise Refused(f"too many arguments for terraform {sub}: {positional}")

    data_dir_env = os.environ.get("TF_DATA_DIR")
    if not data_dir_env:
        raise Refused("TF_DATA_DIR is not set: every stack has its own (Makefile: TF)")
    data_dir = str((chdir / data_dir_env).resolve())
    root_blocks = config_blocks(chdir)
    variables = {labels[0]: attrs for kind, labels, attrs in root_blocks if kind == "variable"}

    if sub in TF_INTERACTIVE and ("-input", "false") not in pairs:
        raise Refused(f"terraform {sub} without -input=false would wait for input in CI")

    given_vars: dict[str, str] = {}
    for value in values_of(pairs, "-var"):
        name, eq, val = value.partition("=")
        if not eq or not re.fullmatch(r"[A-Za-z_][\w-]*", name):
            raise Refused(f"-var {value!r}: expected NAME=VALUE")
        if val == "":
            raise Refused(f"-var {value!r}: empty value")
        if name not in variables:
            raise Refused(f"-var {name}=...: no variable {name!r} is declared in {chdir}")
        given_vars[name] = val
    var_files = values_of(pairs, "-var-file")
    from_files: set[str] = set()
    for path in var_files:
        if not (chdir / path).is_file():
            raise Refused(f"-var-file={path}: no such file (relative to -chdir={chdir})")
        from_files |= {
            labels[0] for kind, labels, _ in blocks((chdir / path).read_text()) if kind == "="
        }
    for target in values_of(pairs, "-target"):
        if not TF_TARGET.match(target):
            raise Refused(f"-target={target}: not a resource or module address")
        if _module_dir(chdir, target) is None:
            raise Refused(f"-target={target}: no such module in the configuration of {chdir}")

    with state() as data:
        stacks = data.setdefault("terraform", {})
        if sub == "init":
            configs = values_of(pairs, "-backend-config")
            for config in configs:
                key, eq, val = config.partition("=")
                if eq and re.fullmatch(r"[a-z_]+", key) and not (chdir / config).exists():
                    if not val:
                        raise Refused(f"-backend-config={config}: empty value")
                elif not (chdir / config).is_file():
                    raise Refused(
                        f"-backend-config={config}: no such file (relative to -chdir={chdir})"
                    )
            stacks[data_dir] = {"backend_config": configs, "chdir": str(chdir.resolve())}
            return f"Terraform has been successfully initialized! (shim, {data_dir_env})\n"
        if data_dir not in stacks:
            raise Refused(f"terraform {sub} before terraform init in TF_DATA_DIR={data_dir_env}")
        stack = stacks[data_dir]
        datadog = any(
            kind == "provider" and labels == ["datadog"] for kind, labels, _ in root_blocks
        )
        missing = [k for k in PRESENCE_ENV if not os.environ.get(k)]
        if sub in ("plan", "apply", "destroy") and datadog and missing:
            raise Refused(f"the datadog provider needs {' and '.join(missing)} in the environment")

        plan_file = positional[0] if sub == "apply" and positional else None
        if sub in ("plan", "destroy") or (sub == "apply" and not plan_file):
            if sub != "plan" and not has(pairs, "-auto-approve"):
                raise Refused(f"terraform {sub} without -auto-approve asks for confirmation")
            required = [n for n, attrs in variables.items() if "default" not in attrs]
            missing = [n for n in required if n not in given_vars and n not in from_files]
            if missing:
                raise Refused(f"no value for required variable(s) {missing} (-input=false)")
        if sub == "plan":
            out = values_of(pairs, "-out")
            plan = {
                "shim": "terraform plan",
                "data_dir": data_dir,
                "vars": given_vars,
                "var_files": var_files,
                "targets": values_of(pairs, "-target"),
            }
            for path in out:
                (chdir / path).write_text(json.dumps(plan, indent=1))
            stack["planned"] = plan
            return f"Plan: (shim) saved to {out[-1] if out else 'nowhere'}\n"
        if sub == "apply" and plan_file:
            if var_files or given_vars or values_of(pairs, "-target"):
                raise Refused("a saved plan is applied as it is: no -var, -var-file or -target")
            path = chdir / plan_file
            if not path.is_file():
                raise Refused(f"saved plan {plan_file}: no such file (relative to -chdir={chdir})")
            try:
                plan = json.loads(path.read_text())
            except ValueError:
                raise Refused(f"{plan_file} is not a plan file") from None
            if plan.get("data_dir") != data_dir:
                raise Refused(f"{plan_file} was planned in {plan.get('data_dir')}, not {data_dir}")
            stack["applied"] = plan
            return "Apply complete! (shim, saved plan)\n"
        if sub in ("apply", "destroy"):
            stack["applied" if sub == "apply" else "destroyed"] = {
                "vars": given_vars,
                "var_files": var_files,
                "targets": values_of(pairs, "-target"),
            }
            return f"{sub.capitalize()} complete! (shim)\n"
        if sub == "validate":
            return "Success! The configuration is valid. (shim)\n"
        # output
        outputs = default_outputs(_stack_name(data_dir, stack.get("applied")))
        if os.environ.get("SHIM_TF_OUTPUTS"):
            outputs.update(json.loads(Path(os.environ["SHIM_TF_OUTPUTS"]).read_text()))
        if not positional:
            if has(pairs, "-raw"):
                raise Refused("terraform output -raw needs an output name")
            return json.dumps({k: {"value": v} for k, v in outputs.items()}) + "\n"
        name = positional[0]
        declared = {labels[0] for kind, labels, _ in root_blocks if kind == "output"}
        if name not in declared:
            raise Refused(f"output {name!r} is not declared in {chdir}")
        if name not in outputs:
            raise Refused(f"output {name!r}: the shim has no value (set SHIM_TF_OUTPUTS)")
        return outputs[name] if has(pairs, "-raw") else json.dumps(outputs[name]) + "\n"


# --------------------------------------------------------------------------------- docker

DOCKER_SUBCOMMANDS: dict[str, dict[str, str]] = {
    "build": {
        "--platform": "value",
        "--file": "value",
        "--tag": "value",
        "--build-arg": "value",
        "--pull": "bool",
    },
    "tag": {},
    "push": {},
    "login": {"--username": "value", "--password-stdin": "bool"},
}
DOCKER_ALIASES = {"-f": "--file", "-t": "--tag", "-u": "--username"}
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
DOCKER_REF = re.compile(
    rf"^(?:(?P<host>(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)"
    rf"(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::\d+)?)/)?"
    rf"(?P<path>{_COMPONENT}(?:/{_COMPONENT})*):(?P<tag>[\w][\w.-]{{0,127}})$"
)
HOST = re.compile(r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)+$")


def image_ref(ref: str) -> dict[str, str]:
    """``[host/]path:tag``, with an explicit tag that is not ``latest`` (tags are commits)."""
    match = DOCKER_REF.match(ref)
    if not match:
        raise Refused(f"{ref!r} is not an image reference with an explicit tag")
    host = match.group("host") or ""
    if host and "." not in host and ":" not in host and host != "localhost":
        host, path = "", f"{host}/{match.group('path')}"  # a path component, not a host
    else:
        path = match.group("path")
    if match.group("tag") == "latest":
        raise Refused(f"{ref!r}: a moving tag; images are tagged with their commit")
    return {"host": host, "path": path, "tag": match.group("tag")}


def docker(argv: list[str], entry: dict[str, Any]) -> str:
    if not argv or argv[0] not in DOCKER_SUBCOMMANDS:
        raise Refused(
            f"unknown or unexpected subcommand {argv[:1]} (allowed: {sorted(DOCKER_SUBCOMMANDS)})"
        )
    sub = argv[0]
    pairs, positional = parse_flags(argv[1:], DOCKER_SUBCOMMANDS[sub], aliases=DOCKER_ALIASES)
    entry["parsed"] = {"subcommand": sub, "flags": pairs, "args": positional}
    with state() as data:
        images = data.setdefault("docker_images", {})
        logins = data.setdefault("docker_logins", [])
        pushed = data.setdefault("docker_pushed", [])
        if sub == "build":
            if len(positional) != 1:
                raise Refused(f"docker build takes one build context, got {positional}")
            if not Path(positional[0]).is_dir():
                raise Refused(f"build context {positional[0]!r}: no such directory")
            dockerfiles = values_of(pairs, "--file")
            for path in dockerfiles:
                if not Path(path).is_file():
                    raise Refused(f"-f {path}: no such Dockerfile (from {os.getcwd()})")
            tags = values_of(pairs, "--tag")
            if not tags:
                raise Refused("docker build without -t: the image could not be tagged or pushed")
            for tag in tags:
                image_ref(tag)
                images[tag] = {
                    "dockerfile": dockerfiles[-1] if dockerfiles else "Dockerfile",
                    "platform": (values_of(pairs, "--platform") or [""])[-1],
                }
            return f"Successfully built (shim) {' '.join(tags)}\n"
        if sub == "tag":
            if len(positional) != 2:
                raise Refused(f"docker tag SOURCE TARGET, got {positional}")
            source, target = positional
            image_ref(target)
            if source not in images:
                raise Refused(f"No such image: {source} (never built or tagged here)")
            images[target] = images[source]
            return ""
        if sub == "push":
            if len(positional) != 1:
                raise Refused(f"docker push takes one image, got {positional}")
            ref = image_ref(positional[0])
            if positional[0] not in images:
                raise Refused(f"An image does not exist locally with the tag: {positional[0]}")
            if not ref["host"] or ref["host"] not in logins:
                raise Refused(f"push to {ref['host'] or 'Docker Hub'} without docker login there")
            pushed.append(positional[0])
            return f"{ref['tag']}: digest: sha256:{'0' * 64} (shim)\n"
        # login
        if len(positional) != 1 or not HOST.match(positional[0]):
            raise Refused(f"docker login needs one registry host name, got {positional}")
        if not has(pairs, "--password-stdin"):
            raise Refused("docker login without --password-stdin would prompt for a password")
        password = sys.stdin.read()
        entry["stdin"] = "<password>" if password.strip() else ""
        if not password.strip():
            raise Refused("docker login --password-stdin read no password")
        logins.append(positional[0])
        return "Login Succeeded (shim)\n"


# ------------------------------------------------------------------------------------ aws

AWS_GLOBAL = {
    "--region": "value",
    "--output": "value",
    "--query": "value",
    "--profile": "value",
    "--no-cli-pager": "bool",
}
AWS_OPERATIONS: dict[tuple[str, ...], dict[str, str]] = {
    ("configure", "get"): {},
    ("sts", "get-caller-identity"): {},
    ("ecr", "get-login-password"): {},
    ("ecr", "describe-images"): {"--repository-name": "value", "--image-ids": "values"},
    ("ecs", "update-service"): {
        "--cluster": "value",
        "--service": "value",
        "--force-new-deployment": "bool",
    },
    ("ecs", "wait", "services-stable"): {"--cluster": "value", "--services": "values"},
    ("ecs", "run-task"): {
        "--cli-input-json": "value",
        "--cluster": "value",
        "--task-definition": "value",
    },
    ("s3", "ls"): {"--recursive": "bool"},
    ("s3", "cp"): {"--recursive": "bool"},
    ("s3", "sync"): {"--delete": "bool"},
}
REGION_NAME = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")


def aws(argv: list[str], entry: dict[str, Any]) -> tuple[str, int]:
    every_flag = {k: v for flags in AWS_OPERATIONS.values() for k, v in flags.items()}
    every_flag.update(AWS_GLOBAL)
    words: list[str] = []  # the command words: arguments that are no flag's value
    after_value_flag = False
    for arg in argv:
        if arg.startswith("--"):
            after_value_flag = every_flag.get(arg.partition("=")[0]) in ("value", "values")
            after_value_flag = after_value_flag and "=" not in arg
        elif after_value_flag:
            after_value_flag = False
        else:
            words.append(arg)
    operation = next(
        (
            op
            for op in sorted(AWS_OPERATIONS, key=len, reverse=True)
            if tuple(words[: len(op)]) == op
        ),
        None,
    )
    if operation is None:
        raise Refused(f"unknown or unexpected command {' '.join(words[:3])!r}")
    rest = list(argv)
    for word in operation:  # the command words, wherever the global options put them
        del rest[rest.index(word)]
    pairs, positional = parse_flags(rest, {**AWS_GLOBAL, **AWS_OPERATIONS[operation]})
    entry["parsed"] = {"command": list(operation), "flags": pairs, "args": positional}
    for region in values_of(pairs, "--region"):
        if not REGION_NAME.match(region):
            raise Refused(f"--region {region!r} is not a region")
    expects = {("configure", "get"): 1, ("s3", "ls"): 1, ("s3", "cp"): 2, ("s3", "sync"): 2}
    if len(positional) != expects.get(operation, 0):
        raise Refused(f"aws {' '.join(operation)}: unexpected arguments {positional}")
    text = values_of(pairs, "--output") == ["text"]
    query = (values_of(pairs, "--query") or [None])[-1]
    region = (values_of(pairs, "--region") or [os.environ.get("AWS_REGION", "")])[-1]

    if operation == ("configure", "get"):
        if positional[0] != "region":
            raise Refused(f"aws configure get {positional[0]}: only region is answered")
        value = os.environ.get("SHIM_AWS_REGION", REGION)
        return (value + "\n", 0) if value else ("", 1)
    if operation == ("sts", "get-caller-identity"):
        account = os.environ.get("SHIM_AWS_ACCOUNT", ACCOUNT)
        if query == "Account" and text:
            return account + "\n", 0
        if query is not None:
            raise Refused(f"--query {query!r}: the shim answers only Account")
        return json.dumps(
            {"Account": account, "Arn": f"arn:aws:iam::{account}:role/shim"}
        ) + "\n", 0
    if operation == ("ecr", "get-login-password"):
        return LOGIN_PASSWORD + "\n", 0
    if operation == ("ecr", "describe-images"):
        repo = values_of(pairs, "--repository-name")
        ids = values_of(pairs, "--image-ids")
        if (
            len(repo) != 1
            or not ids
            or not all(re.fullmatch(r"imageTag=[\w][\w.-]*", i) for i in ids)
        ):
            raise Refused("describe-images needs --repository-name R --image-ids imageTag=T")
        account = os.environ.get("SHIM_AWS_ACCOUNT", ACCOUNT)
        with state() as data:
            pushed = set(data.get("docker_pushed", []))
        tag = ids[0].split("=", 1)[1]
        if f"{account}.dkr.ecr.{region}.amazonaws.com/{repo[0]}:{tag}" in pushed:
            return json.dumps(
                {"imageDetails": [{"repositoryName": repo[0], "imageTags": [tag]}]}
            ), 0
        sys.stderr.write(
            "An error occurred (ImageNotFoundException) when calling the DescribeImages "
            f"operation: The image with imageId {{imageTag:'{tag}'}} does not exist (shim)\n"
        )
        return "", 254
    if operation == ("ecs", "update-service"):
        if len(values_of(pairs, "--cluster")) != 1 or len(values_of(pairs, "--service")) != 1:
            raise Refused("update-service needs --cluster C --service S")
        return json.dumps({"service": {"serviceName": values_of(pairs, "--service")[0]}}) + "\n", 0
    if operation == ("ecs", "wait", "services-stable"):
        if len(values_of(pairs, "--cluster")) != 1 or not values_of(pairs, "--services"):
            raise Refused("wait services-stable needs --cluster C --services S")
        return "", 0
    if operation == ("ecs", "run-task"):
        documents = values_of(pairs, "--cli-input-json")
        if len(documents) != 1:
            raise Refused("run-task: give the request as one --cli-input-json")
        try:
            request = json.loads(documents[0])
        except ValueError as exc:
            raise Refused(f"--cli-input-json is not JSON: {exc}") from None
        if not request.get("cluster") or not request.get("taskDefinition"):
            raise Refused("run-task request without cluster or taskDefinition")
        if "__RUN_DATE__" in documents[0]:
            raise Refused("run-task request still holds the __RUN_DATE__ placeholder")
        arn = f"arn:aws:ecs:{region or REGION}:{ACCOUNT}:task/{request['cluster']}/0shim0"
        if query == "tasks[].taskArn" and text:
            return arn + "\n", 0
        return json.dumps({"tasks": [{"taskArn": arn}], "failures": []}) + "\n", 0
    return "", 0  # s3: nothing to transfer


# ----------------------------------------------------------------------------------- main

TOOLS = {"terraform": terraform, "docker": docker, "aws": aws}


def main(tool: str, argv: list[str]) -> int:
    entry: dict[str, Any] = {
        "tool": tool,
        "argv": argv,
        "cwd": os.getcwd(),
        "time": time.time(),
        "env": {k: os.environ[k] for k in RECORDED_ENV if k in os.environ},
        "env_set": [k for k in PRESENCE_ENV if os.environ.get(k)],
        "refused": None,
    }
    _log_path()
    code = 0
    try:
        check_generic(argv)
        answer = TOOLS[tool](argv, entry)
        output, code = answer if isinstance(answer, tuple) else (answer, 0)
    except Refused as exc:
        entry["refused"] = str(exc)
        entry["exit"] = 2
        record(entry)
        sys.stderr.write(f"{tool} (rehearsal shim) refused: {exc}\n  argv: {argv}\n")
        return 2
    entry["exit"] = code
    record(entry)
    sys.stdout.write(output)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))
