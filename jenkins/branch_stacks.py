"""Short-lived stacks of branch builds: their names, and which of them to destroy.

A branch build deploys ``terraform/stack`` as its own stack (``make tf-apply ENV=branch``)
whose Terraform state is one object per stack, ``<prefix>/<stack>/terraform.tfstate``, in
the bucket of ``terraform/envs/branch.backend.hcl``. The expiry job
(``jenkins/Jenkinsfile.branch-stacks``, ``make tf-destroy-expired-branches``) lists those
objects, reads each stack's branch from its state's outputs, and destroys a stack whose
branch is gone or whose last apply is older than ``--days``.

    python jenkins/branch_stacks.py name BRANCH
    python jenkins/branch_stacks.py expired --backend FILE --prefix P --days N --live FILE
    python jenkins/branch_stacks.py forget --backend FILE --prefix P --stack NAME

``name`` needs only the standard library (make calls it before anything is installed);
the others use boto3 with the standard credential chain (Jenkins' instance profile).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

PREFIX = "sp-"  # every branch stack's name starts so; prod and staging never do
SLUG_CHARS = 15  # 3 + 15 + 1 + 6 = 25: terraform/stack's and the platform's limit
HASH_CHARS = 6
NAME = re.compile(rf"^{PREFIX}([a-z0-9][a-z0-9-]*-)?[0-9a-f]{{{HASH_CHARS}}}$")
STATE_FILE = "terraform.tfstate"


class BranchStackError(Exception):
    """A branch stack operation that cannot go on; the message says what to do."""


def stack_name(branch: str) -> str:
    """``sp-<slug>-<hash>``: lower-case letters, digits and hyphens, at most 25 characters
    (the luigid ALB and target group add ``-luigid`` within AWS's 32), unique per branch
    through the hash of the whole branch name even when slugs collide."""
    if not branch.strip():
        raise BranchStackError("no branch name: run with BRANCH=<branch> (Jenkins: BRANCH_NAME)")
    slug = re.sub(r"[^a-z0-9]+", "-", branch.lower()).strip("-")[:SLUG_CHARS].strip("-")
    digest = hashlib.sha256(branch.encode()).hexdigest()[:HASH_CHARS]
    return f"{PREFIX}{slug}-{digest}" if slug else f"{PREFIX}{digest}"


def is_branch_stack(name: str) -> bool:
    return bool(NAME.match(name)) and len(name) <= 25


def backend_settings(path: Path) -> dict[str, str]:
    """``key = "value"`` lines of a backend .hcl file (comments ignored)."""
    settings: dict[str, str] = {}
    for line in path.read_text().splitlines():
        match = re.match(r'^\s*([a-z_]+)\s*=\s*"?([^"#]*?)"?\s*(#.*)?$', line)
        if match:
            settings[match.group(1)] = match.group(2).strip()
    for key in ("bucket", "region"):
        if not settings.get(key) or "REPLACE-ME" in settings[key]:
            raise BranchStackError(
                f"{path}: set {key} to the Terraform state bucket's (docs/deploy.md, step 1)"
            )
    return settings


@dataclass(frozen=True)
class BranchStack:
    name: str
    branch: str
    last_applied: datetime
    key: str


def s3_client(region: str) -> Any:
    import boto3

    return boto3.session.Session().client("s3", region_name=region)


def list_stacks(s3: Any, bucket: str, prefix: str) -> list[BranchStack]:
    """Every branch stack with a state object under ``prefix``, with its branch (from the
    state's ``branch`` output) and when it was last applied (the object's time)."""
    stacks: list[BranchStack] = []
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=f"{prefix.rstrip('/')}/"):
        for item in page.get("Contents") or []:
            key = str(item["Key"])
            parts = key[len(prefix.rstrip("/")) + 1 :].split("/")
            if len(parts) != 2 or parts[1] != STATE_FILE or not is_branch_stack(parts[0]):
                continue
            state = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read() or b"{}")
            branch = str(((state.get("outputs") or {}).get("branch") or {}).get("value") or "")
            stacks.append(BranchStack(parts[0], branch, item["LastModified"], key))
    return sorted(stacks, key=lambda s: s.name)


def expired(
    stacks: list[BranchStack], live_branches: set[str], days: float, now: datetime
) -> list[tuple[BranchStack, str]]:
    """The stacks to destroy and why: their branch is gone, or they were last applied
    more than ``days`` ago."""
    doomed = []
    for stack in stacks:
        if stack.branch not in live_branches:
            doomed.append((stack, f"branch {stack.branch or '(unknown)'!r} is gone"))
        elif now - stack.last_applied > timedelta(days=days):
            age = (now - stack.last_applied).days
            doomed.append((stack, f"last applied {age} days ago (limit {days:g})"))
    return doomed


def forget(s3: Any, bucket: str, prefix: str, stack: str) -> None:
    """Delete a destroyed stack's state object (and a stale lock file)."""
    if not is_branch_stack(stack):
        raise BranchStackError(f"{stack!r} is not a branch stack name (sp-...): refusing")
    key = f"{prefix.rstrip('/')}/{stack}/{STATE_FILE}"
    s3.delete_object(Bucket=bucket, Key=key)
    s3.delete_object(Bucket=bucket, Key=f"{key}.tflock")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="branch_stacks.py", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    name = sub.add_parser("name", help="print the stack name of a branch")
    name.add_argument("branch")
    check = sub.add_parser("check", help="exit 0 if NAME is a branch stack name")
    check.add_argument("stack")
    for command in ("expired", "forget"):
        p = sub.add_parser(command)
        p.add_argument("--backend", type=Path, required=True, help="branch.backend.hcl")
        p.add_argument("--prefix", required=True, help="state key prefix of branch stacks")
    sub.choices["expired"].add_argument("--days", type=float, required=True)
    sub.choices["expired"].add_argument(
        "--live", type=Path, required=True, help="file with one live branch name per line"
    )
    sub.choices["expired"].add_argument("--now", help="ISO time to judge ages at (tests)")
    sub.choices["forget"].add_argument("--stack", required=True)
    args = parser.parse_args(argv)
    try:
        if args.command == "name":
            print(stack_name(args.branch))
            return 0
        if args.command == "check":
            if not is_branch_stack(args.stack):
                raise BranchStackError(
                    f"{args.stack!r} is not a branch stack name (sp-<branch>-<hash>, at most "
                    "25 characters): give BRANCH=<branch>, or STACK= the name "
                    "`make stack-name ENV=branch BRANCH=<branch>` prints"
                )
            return 0
        settings = backend_settings(args.backend)
        s3 = s3_client(settings["region"])
        if args.command == "forget":
            forget(s3, settings["bucket"], args.prefix, args.stack)
            return 0
        live = {line.strip() for line in args.live.read_text().splitlines() if line.strip()}
        now = datetime.fromisoformat(args.now) if args.now else datetime.now(UTC)
        stacks = list_stacks(s3, settings["bucket"], args.prefix)
        for stack, why in expired(stacks, live, args.days, now):
            print(f"{stack.name}\t{stack.branch}\t{why}")
        return 0
    except BranchStackError as exc:
        print(f"branch_stacks.py: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
