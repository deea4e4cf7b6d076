"""Reading terraform/ for the infrastructure tests: every .tf parsed with python-hcl2, and a
small resolver that follows plain references (``var.x``, ``local.x.y``) from the root
configuration (``terraform/stack`` with an environment's ``terraform/envs/<env>.tfvars``)
down through its module calls, so a test can ask "what is the name of this
resource in production?" without Terraform or its providers (which cannot be downloaded
here; Jenkins runs ``terraform validate`` and ``plan``)."""

from __future__ import annotations

import configparser
import functools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hcl2

REPO = Path(__file__).resolve().parents[2]
TERRAFORM = REPO / "terraform"
MODULES = TERRAFORM / "modules"
ENVS = TERRAFORM / "envs"
STACK = TERRAFORM / "stack"
ENV_NAMES = ("prod", "staging", "branch")
# A branch stack reads staging's values first, then its own (Makefile: TF_VARS_branch).
VAR_FILES = {
    "prod": ("prod.tfvars",),
    "staging": ("staging.tfvars",),
    "branch": ("staging.tfvars", "branch.tfvars"),
}
# What make adds on the command line for a branch stack (a made-up branch).
BRANCH_CLI = {"name": "sp-feature-x-0a1b2c", "branch": "feature/x"}

_REF = re.compile(r"\$\{\s*((?:var|local)\.[A-Za-z0-9_.\-]+)\s*\}")


class Unresolved(Exception):
    """An expression that is more than plain var./local. references and literals."""


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] == '"':
        try:
            return str(json.loads(text))
        except ValueError:
            return text[1:-1]
    return text


def clean(node: Any) -> Any:
    """python-hcl2's output without its bookkeeping: quotes off labels and literals,
    no ``__is_block__``/``__comments__`` keys."""
    if isinstance(node, dict):
        return {_unquote(k): clean(v) for k, v in node.items() if not k.startswith("__")}
    if isinstance(node, list):
        return [clean(v) for v in node]
    if isinstance(node, str):
        return _unquote(node)
    return node


@functools.cache
def parse(path: Path) -> dict[str, Any]:
    with path.open() as fh:
        return clean(hcl2.load(fh))


def tf_files() -> list[Path]:
    return sorted(p for p in TERRAFORM.rglob("*.tf") if ".terraform" not in p.parts)


@functools.cache
def tfvars(env: str) -> dict[str, Any]:
    """The values an environment gives the root configuration, in make's order (later
    files and the command line win)."""
    values: dict[str, Any] = {}
    for name in VAR_FILES[env]:
        values.update(parse(ENVS / name))
    if env == "branch":
        values.update(BRANCH_CLI)
    return values


@dataclass(frozen=True)
class Module:
    """One directory of .tf files (a module or an environment)."""

    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def files(self) -> list[Path]:
        return sorted(self.path.glob("*.tf"))

    def text(self) -> str:
        return "\n".join(p.read_text() for p in self.files)

    def blocks(self, kind: str) -> Iterator[tuple[Path, Any]]:
        for path in self.files:
            for block in parse(path).get(kind, []):
                yield path, block

    def labelled(self, kind: str) -> dict[str, Any]:
        """``variable``/``output``/``module`` blocks by label."""
        return {label: body for _, block in self.blocks(kind) for label, body in block.items()}

    def typed(self, kind: str) -> list[tuple[str, str, Any]]:
        """``resource``/``data`` blocks as (type, name, body)."""
        return [
            (rtype, name, body)
            for _, block in self.blocks(kind)
            for rtype, by_name in block.items()
            for name, body in by_name.items()
        ]

    def resource(self, rtype: str, name: str = "this") -> dict[str, Any]:
        for t, n, body in self.typed("resource"):
            if (t, n) == (rtype, name):
                return body
        raise KeyError(f"{self.path.relative_to(REPO)} has no resource {rtype}.{name}")

    def locals(self) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for _, block in self.blocks("locals"):
            merged.update(block)
        return merged


def all_modules() -> list[Module]:
    return [Module(p) for p in sorted(MODULES.iterdir()) if p.is_dir()]


def root() -> Module:
    """terraform/stack: the one root configuration of every stack."""
    return Module(STACK)


@dataclass
class Scope:
    """A module instance: its directory and the values of the variables we could resolve."""

    module: Module
    values: dict[str, Any]

    def lookup(self, ref: str) -> Any:
        kind, _, rest = ref.partition(".")
        parts = rest.split(".")
        value: Any = self.values if kind == "var" else self.module.locals()
        for part in parts:
            if not isinstance(value, dict) or part not in value:
                raise Unresolved(f"{ref} in {self.module.path.relative_to(REPO)}")
            value = value[part]
        return self.resolve(value) if kind == "local" else value

    def resolve(self, expr: Any) -> Any:
        """The value of a literal, or of a string made of var./local. references."""
        if not isinstance(expr, str):
            return expr
        whole = _REF.fullmatch(expr.strip())
        if whole:
            return self.lookup(whole.group(1))
        result = _REF.sub(lambda m: str(self.lookup(m.group(1))), expr)
        if "${" in result:
            raise Unresolved(f"{expr!r} in {self.module.path.relative_to(REPO)}")
        return result

    def call(self, name: str) -> Scope:
        """The scope of ``module "<name>"`` called from this one."""
        calls = self.module.labelled("module")
        if name not in calls:
            raise KeyError(f"{self.module.path.relative_to(REPO)} calls no module {name!r}")
        body = calls[name]
        child = Module((self.module.path / body["source"]).resolve())
        values = {
            k: v.get("default") for k, v in child.labelled("variable").items() if "default" in v
        }
        for key, expr in body.items():
            if key in ("source", "providers", "depends_on", "count", "for_each"):
                continue
            try:
                values[key] = self.resolve(expr)
            except Unresolved:
                values[key] = expr  # left as written (a module output, a function call)
        return Scope(child, values)

    def attr(self, rtype: str, name: str, attribute: str) -> Any:
        return self.resolve(self.module.resource(rtype, name)[attribute])


def env_scope(env: str) -> Scope:
    """The root configuration as ``env`` instantiates it: variable defaults, then the
    environment's .tfvars files (and, for a branch stack, make's -var name/branch)."""
    module = root()
    values = {k: v.get("default") for k, v in module.labelled("variable").items() if "default" in v}
    values.update(tfvars(env))
    return Scope(module, values)


def luigi_cfg() -> configparser.ConfigParser:
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(REPO / "luigi.cfg")
    return cfg


def statements(document: dict[str, Any]) -> list[dict[str, Any]]:
    """Every statement of an aws_iam_policy_document body, dynamic ones included."""
    found = list(document.get("statement", []))
    for dynamic in document.get("dynamic", []):
        for label, body in dynamic.items():
            if label == "statement":
                found.extend(body.get("content", []))
    return found
