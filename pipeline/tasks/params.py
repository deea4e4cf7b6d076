"""Task parameters that are canonical before a task exists.

A luigi task's identity is its parameters. Each parameter here resolves its default
from luigi.cfg and normalises its value in ``normalize``, which luigi applies to values
from its command line, from keyword arguments and from defaults alike — so cron's
``luigi --module pipeline.tasks Deliver --run-date D``, ``pipeline run --run-date D`` and
luigid's UI name the same tasks.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from pathlib import Path
from typing import Any

import luigi

from pipeline import config
from pipeline.core.spec import ProgramSpec, load_spec, with_params
from pipeline.errors import ConfigError
from pipeline.executors import EXECUTORS


def canonical_program(value: str | None) -> str:
    """A program spec path as tasks name it: relative to the project directory (the one
    holding luigi.cfg) when inside it, else absolute. A relative value is taken relative
    to the project directory; empty means ``[pipeline] program``.

    A variant that differs by params only is the spec path with overrides:
    ``programs/estimator/program.toml?bootstrap=30&seed=7`` (values in TOML syntax; the
    canonical form sorts the names). The overrides are part of the program's identity,
    its fingerprint and so its slug (docs/variants.md)."""
    text = str(value or "")
    file_part, _, query = text.partition("?")
    project = config.project_dir()
    path = Path(file_part).expanduser() if file_part else Path(config.program_spec_path())
    if not path.is_absolute():
        path = project / path
    path = Path(os.path.normpath(path))
    try:
        name = path.relative_to(project).as_posix()
    except ValueError:
        name = str(path)
    overrides = parse_overrides(query.split("&") if query else [], source=text)
    return with_overrides(name, overrides)


def parse_overrides(items: list[str], *, source: str = "--param") -> dict[str, Any]:
    """``["bootstrap=30", "label='x'"]`` → ``{"bootstrap": 30, "label": "x"}``: each
    value is read as a TOML value (a bare word that is not one is a string)."""
    overrides: dict[str, Any] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        name = name.strip()
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", name):
            raise ConfigError(f"{source}: expected NAME=VALUE (e.g. bootstrap=30), got {item!r}")
        try:
            overrides[name] = tomllib.loads(f"v = {raw.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            overrides[name] = raw.strip()
    return overrides


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value))  # a TOML basic string


def with_overrides(program: str, overrides: dict[str, Any]) -> str:
    """``program`` (canonical) with more param overrides (later ones win), canonical."""
    file_part, _, query = program.partition("?")
    merged = {**parse_overrides(query.split("&") if query else []), **overrides}
    for name, value in merged.items():
        if isinstance(value, str) and ("&" in value or "?" in value):
            raise ConfigError(f"--param {name}: a value cannot contain '&' or '?'")
        if isinstance(value, dict | list):
            raise ConfigError(f"--param {name}: only strings, numbers and booleans")
    if not merged:
        return file_part
    return file_part + "?" + "&".join(f"{k}={_toml_value(merged[k])}" for k in sorted(merged))


def spec_file(program: str) -> Path:
    """The file a canonical program value names (without its param overrides)."""
    path = Path(program.partition("?")[0])
    return path if path.is_absolute() else config.project_dir() / path


def load_program(program: str) -> ProgramSpec:
    """The spec a canonical program value names, its param overrides applied."""
    _, _, query = program.partition("?")
    spec = load_spec(spec_file(program))
    return with_params(spec, parse_overrides(query.split("&") if query else [], source=program))


class ProgramParameter(luigi.Parameter):
    """A program spec TOML, optionally with param overrides (``SPEC?bootstrap=30``);
    empty = ``[pipeline] program``."""

    def normalize(self, x: Any) -> str:
        return canonical_program(str(x) if x else "")


class ProgramsParameter(luigi.ListParameter):
    """One or more program specs (variants); empty = ``[pipeline] program``."""

    def normalize(self, x: Any) -> tuple[str, ...]:
        values = super().normalize(x) or ()
        if isinstance(values, str):
            values = (values,)
        programs = [canonical_program(str(v)) for v in values] or [canonical_program("")]
        return tuple(dict.fromkeys(programs))


class WarehouseParameter(luigi.Parameter):
    """A warehouse URI; empty = ``[pipeline] warehouse`` (else the DuckDB file under
    ``$PIPELINE_HOME``)."""

    def normalize(self, x: Any) -> str:
        uri = str(x).strip() if x else config.warehouse_uri()
        if uri.startswith("duckdb://") and uri != "duckdb://" and not uri.startswith("duckdb:///"):
            # duckdb://relative/file.duckdb: anchor it, so the id does not depend on cwd.
            uri = f"duckdb://{Path(uri.removeprefix('duckdb://')).absolute()}"
        return uri


class ExecutorParameter(luigi.Parameter):
    """Where programs run; empty = ``[pipeline] executor``. Not part of a task's identity:
    the same program on the same input gives the same results wherever it runs."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(significant=False, **kwargs)

    def normalize(self, x: Any) -> str:
        name = str(x).strip() if x else config.executor_name()
        if name not in EXECUTORS:
            raise ConfigError(f"unknown executor {name!r} (choose from: {', '.join(EXECUTORS)})")
        return name


class RawParameter(luigi.Parameter):
    """The raw export directory; empty = ``[pipeline] raw`` or ``$PIPELINE_HOME/raw``. Not
    part of the identity: the run date's pin (its files' checksums) is."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(significant=False, **kwargs)

    def normalize(self, x: Any) -> str:
        return str(Path(str(x)).expanduser().absolute()) if x else str(config.raw_dir())
