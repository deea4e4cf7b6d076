"""Program specs: how to run an unmodified estimation program (docs/contracts/program-spec.md).

A spec is a TOML file. ``load_spec`` checks it completely and raises ``SpecError`` naming
the file and the key; ``render_command`` fills the placeholders of its command.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import string
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.errors import SpecError

PLACEHOLDERS = frozenset({"input", "frame", "cohort", "run_date", "output_dir", "checkpoint_dir"})
# ``spot``: where the first attempt runs (docs/executors.md, "Spot first"). "" = the
# executor's own setting ([ecs] spot / [batch] spot / [local] spot).
SPOT_MODES = ("first", "never")
DEFAULT_CHECKPOINT_INTERVAL = 300.0
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class Tolerance:
    """How far a golden result may be from the expected one: a value passes when
    ``|actual - expected| <= abs`` or ``<= rel * |expected|`` (either bound may be given;
    none means exact)."""

    abs: float = 0.0
    rel: float = 0.0

    def allows(self, actual: float, expected: float) -> bool:
        diff = abs(actual - expected)
        return diff <= self.abs or diff <= self.rel * abs(expected)


@dataclass(frozen=True)
class GoldenCase:
    """A ``[[golden]]`` table: a small checked-in input and frame and the results the
    program must produce from them (paths absolute, resolved against the spec file)."""

    name: str
    cohort: str
    input: str
    frame: str
    expected: str
    run_date: str = "2000-01-01"
    tolerance: dict[str, Tolerance] = field(default_factory=dict)


DRIFT_KEYS = ("warn_change", "fail_change")
GOLDEN_FILES = ("input", "frame", "expected")  # a golden case's files


@dataclass(frozen=True)
class ProgramSpec:
    """A validated program spec."""

    name: str
    version: str
    command: tuple[str, ...]
    results: str
    input_format: str = "parquet"
    timeout_seconds: float = 7200.0
    image: str = ""
    cpu: int = 1024
    memory: int = 2048
    params: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    # Quality gates (docs/quality.md): golden cases for `pipeline regress`, and drift
    # thresholds overriding [warehouse] qa_warn_change / qa_fail_change. Neither changes
    # the results, so neither is part of the fingerprint or the job document.
    golden: tuple[GoldenCase, ...] = ()
    drift: dict[str, float] = field(default_factory=dict)
    # Spot and checkpoints (docs/executors.md, "Spot first"): neither changes the results,
    # so neither is part of the fingerprint; both travel in the job document.
    spot: str = ""  # "first", "never", or "" (the executor's setting)
    checkpoint_dir: str = ""  # a directory under {output_dir} the program resumes from
    checkpoint_interval: float = DEFAULT_CHECKPOINT_INTERVAL

    @property
    def fingerprint(self) -> str:
        """Short hash of everything that changes the results: part of output paths."""
        payload = {
            "name": self.name,
            "version": self.version,
            "command": list(self.command),
            "results": self.results,
            "input_format": self.input_format,
            "image": self.image,
            "params": self.params,
        }
        blob = json.dumps(payload, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:10]

    def to_dict(self) -> dict[str, Any]:
        """The spec as a TOML-shaped dict that ``spec_from_dict`` reads back (job documents)."""
        return {
            "name": self.name,
            "version": self.version,
            "image": self.image,
            "command": list(self.command),
            "input_format": self.input_format,
            "timeout": self.timeout_seconds,
            "cpu": self.cpu,
            "memory": self.memory,
            "outputs": {"results": self.results},
            "params": dict(self.params),
            **({"spot": self.spot} if self.spot else {}),
            **(
                {
                    "checkpoint_dir": self.checkpoint_dir,
                    "checkpoint_interval": self.checkpoint_interval,
                }
                if self.checkpoint_dir
                else {}
            ),
        }

    @property
    def slug(self) -> str:
        """Directory name that identifies this program build: ``name-version-fingerprint``."""
        return f"{self.name}-{self.version}-{self.fingerprint}"


def parse_duration(value: Any, *, where: str = "timeout") -> float:
    """``"2h"``, ``"90m"``, ``"30s"``, ``"1.5h"`` or a number of seconds."""
    if isinstance(value, bool):
        raise SpecError(f"{where}: expected a duration like '2h', got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise SpecError(
                f"{where}: expected a duration like '2h', '90m' or '30s', got {value!r}"
            )
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds <= 0:
        raise SpecError(f"{where}: must be positive, got {value!r}")
    return seconds


def load_spec(path: str | Path) -> ProgramSpec:
    """Read and validate a program spec; every problem names the file and the key.

    A variant spec names its base with ``extends = "../estimator/program.toml"``
    (relative to the variant file) and overrides keys of it; its ``[params]`` and
    ``[outputs]`` tables are merged key by key into the base's. Everything else about the
    program (command, image) stays the base's unless the variant says otherwise."""
    return spec_from_dict(_read_spec(Path(path), ()), source=str(path))


def _read_spec(path: Path, seen: tuple[Path, ...]) -> dict[str, Any]:
    """The TOML of ``path`` with its ``extends`` chain resolved."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        where = f" (extended by {seen[-1]})" if seen else ""
        raise SpecError(f"{path}: program spec not found{where}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path}: not valid TOML: {exc}") from None
    _anchor_golden(data, path.parent)
    base_name = data.pop("extends", None)
    if base_name is None:
        return data
    if not isinstance(base_name, str) or not base_name:
        raise SpecError(f"{path}: extends: must be the path of a base spec, got {base_name!r}")
    base_path = Path(os.path.normpath(path.parent / base_name))
    if base_path in (*seen, path):
        chain = " -> ".join(str(p) for p in (*seen, path, base_path))
        raise SpecError(f"{path}: extends: cycle ({chain})")
    merged = _read_spec(base_path, (*seen, path))
    for key, value in data.items():
        if key in ("params", "outputs") and isinstance(value, dict):
            base_table = merged.get(key, {})
            merged[key] = {**(base_table if isinstance(base_table, dict) else {}), **value}
        else:
            merged[key] = value
    return merged


def _anchor_golden(data: dict[str, Any], directory: Path) -> None:
    """A ``[[golden]]`` case's files are relative to the spec that declares it: made
    absolute here, so a variant elsewhere that inherits the case reads the base's files."""
    golden = data.get("golden")
    if not isinstance(golden, list):
        return  # a wrong type is reported by spec_from_dict
    for case in golden:
        if isinstance(case, dict):
            for key in GOLDEN_FILES:
                if isinstance(case.get(key), str) and case[key]:
                    case[key] = os.path.normpath(directory.absolute() / case[key])


def with_params(spec: ProgramSpec, overrides: dict[str, Any]) -> ProgramSpec:
    """``spec`` with some ``[params]`` values replaced (a new fingerprint and slug).
    Only params the spec declares can be overridden: a typo must not run the base."""
    unknown = sorted(set(overrides) - set(spec.params))
    if unknown:
        known = ", ".join(sorted(spec.params)) or "none"
        raise SpecError(
            f"{spec.source}: params.{unknown[0]}: not a parameter of this spec (its "
            f"[params]: {known})"
        )
    if not overrides:
        return spec
    return dataclasses.replace(spec, params={**spec.params, **overrides})


def spec_from_dict(data: dict[str, Any], *, source: str = "<spec>") -> ProgramSpec:
    def fail(key: str, message: str) -> SpecError:
        return SpecError(f"{source}: {key}: {message}")

    known = {
        "name",
        "version",
        "image",
        "command",
        "input_format",
        "timeout",
        "cpu",
        "memory",
        "outputs",
        "params",
        "golden",
        "drift",
        "spot",
        "checkpoint_dir",
        "checkpoint_interval",
    }
    unknown = sorted(set(data) - known)
    if unknown:
        raise fail(unknown[0], f"unknown key (known: {', '.join(sorted(known))})")
    for key in ("name", "version", "command"):
        if key not in data:
            raise fail(key, "required key is missing")
    name, version = data["name"], data["version"]
    for key, value in (("name", name), ("version", version)):
        if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", value):
            raise fail(key, f"must be a simple identifier ([A-Za-z0-9._-]), got {value!r}")
    command = data["command"]
    if (
        not isinstance(command, list)
        or not command
        or not all(isinstance(arg, str) for arg in command)
    ):
        raise fail("command", "must be a non-empty list of strings")
    input_format = data.get("input_format", "parquet")
    if input_format not in ("parquet", "csv"):
        raise fail("input_format", f"must be 'parquet' or 'csv', got {input_format!r}")
    outputs = data.get("outputs", {})
    if not isinstance(outputs, dict) or not isinstance(outputs.get("results"), str):
        raise fail("outputs.results", "required: the results file under {output_dir}")
    results = outputs["results"]
    if not results.endswith((".csv", ".parquet")) or results.startswith("/") or ".." in results:
        raise fail("outputs.results", f"must be a relative .csv or .parquet path, got {results!r}")
    params = data.get("params", {})
    if not isinstance(params, dict):
        raise fail("params", "must be a table")
    for key in ("cpu", "memory"):
        value = data.get(key, 1024 if key == "cpu" else 2048)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise fail(key, f"must be a positive integer, got {value!r}")
    image = data.get("image", "")
    if not isinstance(image, str):
        raise fail("image", "must be a string")
    spot = data.get("spot", "")
    if spot not in ("", *SPOT_MODES):
        raise fail("spot", f"must be 'first' or 'never', got {spot!r}")
    checkpoint_dir = data.get("checkpoint_dir", "")
    if not isinstance(checkpoint_dir, str) or (
        checkpoint_dir
        and (
            checkpoint_dir.startswith("/")
            or ".." in checkpoint_dir.split("/")
            or checkpoint_dir.strip("/.") == ""
            or results == checkpoint_dir.strip("/")
            or results.startswith(checkpoint_dir.strip("/") + "/")
        )
    ):
        raise fail(
            "checkpoint_dir",
            f"must be a relative directory under {{output_dir}} without '..' that does not "
            f"hold outputs.results, got {checkpoint_dir!r}",
        )
    if "checkpoint_interval" in data and not checkpoint_dir:
        raise fail("checkpoint_interval", "needs checkpoint_dir")
    spec = ProgramSpec(
        name=name,
        version=version,
        command=tuple(command),
        results=results,
        input_format=input_format,
        timeout_seconds=parse_duration(data.get("timeout", "2h"), where=f"{source}: timeout"),
        image=image,
        cpu=data.get("cpu", 1024),
        memory=data.get("memory", 2048),
        params=dict(params),
        source=source,
        golden=_golden_cases(data.get("golden", []), source, fail),
        drift=_drift(data.get("drift", {}), fail),
        spot=spot,
        checkpoint_dir=checkpoint_dir.strip("/"),
        checkpoint_interval=parse_duration(
            data.get("checkpoint_interval", DEFAULT_CHECKPOINT_INTERVAL),
            where=f"{source}: checkpoint_interval",
        ),
    )
    # Render once with dummy values so an unknown placeholder fails now, not mid-run.
    render_command(spec, {k: k for k in PLACEHOLDERS})
    return spec


def _golden_cases(value: Any, source: str, fail: Any) -> tuple[GoldenCase, ...]:
    """``[[golden]]`` tables; paths relative to the directory of the spec file that declares
    them (``_anchor_golden``), else of ``source``."""
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise fail("golden", "must be an array of tables ([[golden]])")
    base = Path(source).absolute().parent if source and not source.startswith("<") else Path.cwd()
    cases, names = [], set()
    for index, case in enumerate(value):
        where = f"golden[{index}]"
        known = {"name", "cohort", "input", "frame", "expected", "run_date", "tolerance"}
        unknown = sorted(set(case) - known)
        if unknown:
            raise fail(f"{where}.{unknown[0]}", f"unknown key (known: {', '.join(sorted(known))})")
        for key in ("name", "cohort", "input", "frame", "expected"):
            if not isinstance(case.get(key), str) or not case[key]:
                raise fail(f"{where}.{key}", "required: a non-empty string")
        if case["name"] in names:
            raise fail(f"{where}.name", f"duplicate golden case {case['name']!r}")
        names.add(case["name"])
        run_date = str(case.get("run_date", "2000-01-01"))
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", run_date):
            raise fail(f"{where}.run_date", f"expected YYYY-MM-DD, got {run_date!r}")
        tolerances = case.get("tolerance", {})
        if not isinstance(tolerances, dict):
            raise fail(f"{where}.tolerance", "must be a table: column = {abs = X, rel = Y}")
        parsed = {}
        for column, bounds in tolerances.items():
            key = f"{where}.tolerance.{column}"
            if not isinstance(bounds, dict) or not bounds or set(bounds) - {"abs", "rel"}:
                raise fail(key, "must be a table with abs and/or rel, e.g. {abs = 0.5}")
            for name, bound in bounds.items():
                if isinstance(bound, bool) or not isinstance(bound, int | float) or bound < 0:
                    raise fail(f"{key}.{name}", f"must be a non-negative number, got {bound!r}")
            parsed[column] = Tolerance(
                abs=float(bounds.get("abs", 0.0)), rel=float(bounds.get("rel", 0.0))
            )
        cases.append(
            GoldenCase(
                name=case["name"],
                cohort=case["cohort"],
                input=str(base / case["input"]),
                frame=str(base / case["frame"]),
                expected=str(base / case["expected"]),
                run_date=run_date,
                tolerance=parsed,
            )
        )
    return tuple(cases)


def _drift(value: Any, fail: Any) -> dict[str, float]:
    """``[drift] warn_change / fail_change``: this program's drift thresholds."""
    if not isinstance(value, dict):
        raise fail("drift", "must be a table: warn_change = 0.2, fail_change = 0.5")
    unknown = sorted(set(value) - set(DRIFT_KEYS))
    if unknown:
        raise fail(f"drift.{unknown[0]}", f"unknown key (known: {', '.join(DRIFT_KEYS)})")
    drift = {}
    for key, bound in value.items():
        if isinstance(bound, bool) or not isinstance(bound, int | float) or bound < 0:
            raise fail(f"drift.{key}", f"must be a non-negative number, got {bound!r}")
        drift[key] = float(bound)
    if drift.get("warn_change", 0.0) > drift.get("fail_change", float("inf")):
        raise fail("drift", "warn_change must not exceed fail_change")
    return drift


def render_command(spec: ProgramSpec, values: dict[str, str]) -> list[str]:
    """Fill ``{input}``, ``{frame}``, ``{cohort}``, ``{run_date}``, ``{output_dir}``,
    ``{checkpoint_dir}`` (when the spec has one) and ``{params.NAME}`` in each argument.
    Literal braces are written ``{{`` and ``}}``."""
    rendered = []
    for index, arg in enumerate(spec.command):
        out = []
        try:
            parsed = list(string.Formatter().parse(arg))
        except ValueError as exc:
            raise SpecError(f"{spec.source}: command[{index}] {arg!r}: {exc}") from None
        for literal, field_name, format_spec, conversion in parsed:
            out.append(literal)
            if field_name is None:
                continue
            if format_spec or conversion:
                raise SpecError(
                    f"{spec.source}: command[{index}] {arg!r}: format specs are not supported"
                )
            if field_name.startswith("params."):
                param = field_name.removeprefix("params.")
                if param not in spec.params:
                    raise SpecError(
                        f"{spec.source}: command[{index}] uses {{{field_name}}} "
                        f"but [params] has no {param!r}"
                    )
                out.append(str(spec.params[param]))
            elif field_name == "checkpoint_dir" and not spec.checkpoint_dir:
                raise SpecError(
                    f"{spec.source}: command[{index}] uses {{checkpoint_dir}} but the spec "
                    "sets no checkpoint_dir"
                )
            elif field_name == "checkpoint_dir" and field_name not in values:
                out.append(f"{values['output_dir']}/{spec.checkpoint_dir}")
            elif field_name in PLACEHOLDERS:
                out.append(str(values[field_name]))
            else:
                known = ", ".join(f"{{{p}}}" for p in sorted(PLACEHOLDERS))
                raise SpecError(
                    f"{spec.source}: command[{index}] has unknown placeholder "
                    f"{{{field_name}}} (known: {known}, {{params.NAME}})"
                )
        rendered.append("".join(out))
    return rendered
