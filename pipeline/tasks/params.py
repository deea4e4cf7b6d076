"""Task parameters that are canonical before a task exists.

A luigi task's identity is its parameters. Each parameter here resolves its default
from luigi.cfg and normalises its value in ``normalize``, which luigi applies to values
from its command line, from keyword arguments and from defaults alike — so cron's
``luigi --module pipeline.tasks Deliver --run-date D``, ``pipeline run --run-date D`` and
luigid's UI name the same tasks.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import luigi

from pipeline import config
from pipeline.errors import ConfigError
from pipeline.executors import EXECUTORS


def canonical_program(value: str | None) -> str:
    """A program spec path as tasks name it: relative to the project directory (the one
    holding luigi.cfg) when inside it, else absolute. A relative value is taken relative
    to the project directory; empty means ``[pipeline] program``."""
    project = config.project_dir()
    path = Path(value).expanduser() if value else Path(config.program_spec_path())
    if not path.is_absolute():
        path = project / path
    path = Path(os.path.normpath(path))
    try:
        return path.relative_to(project).as_posix()
    except ValueError:
        return str(path)


def spec_file(program: str) -> Path:
    """The file a canonical program value names."""
    path = Path(program)
    return path if path.is_absolute() else config.project_dir() / path


class ProgramParameter(luigi.Parameter):
    """A program spec TOML; empty = ``[pipeline] program``."""

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
