"""Typed errors. Each one says what is wrong, where, and what to do about it.

The CLI prints ``str(error)`` as one line and exits non-zero; luigi tasks raise them so
that the scheduler shows the same line as the task's failure reason.
"""

from __future__ import annotations


class PipelineError(Exception):
    """Base class: an error the user can act on (no traceback needed)."""


class ConfigError(PipelineError):
    """A setting in luigi.cfg, the environment or the command line is wrong."""


class SpecError(PipelineError):
    """A program spec (TOML) is malformed."""


class InputError(PipelineError):
    """Raw input is unusable: names the file and, where it applies, row and column."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        row: int | None = None,
        column: str | None = None,
    ) -> None:
        self.file, self.row, self.column, self.reason = file, row, column, message
        where = []
        if file is not None:
            where.append(str(file))
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column {column!r}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)


class PinnedInputsError(PipelineError):
    """The raw files of a run date changed after the date was first cleansed."""


class ProgramFailed(PipelineError):
    """The estimation program exited non-zero, timed out or could not start."""


class ValidationFailed(PipelineError):
    """An error-severity validation check failed; ingest of that cohort is blocked."""


class StorageError(PipelineError):
    """The storage root cannot be read or written (S3 credentials, permissions, network)."""


class DataQualityFailed(PipelineError):
    """An error-severity data-quality check failed; the cohort's program does not run."""


class RegressionFailed(PipelineError):
    """A program's golden case is out of tolerance (``pipeline regress``)."""


class WarehouseError(PipelineError):
    """A warehouse load or query failed."""


class UsageError(PipelineError):
    """A command-line argument is out of range or points somewhere unusable."""
