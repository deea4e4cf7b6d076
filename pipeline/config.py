"""Settings: luigi.cfg sections plus the environment, read in one place.

Nothing here is read at import time, so tests can point ``PIPELINE_HOME`` or
``LUIGI_CONFIG_PATH`` anywhere before calling these functions.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import luigi.configuration

from pipeline.errors import ConfigError


def get(section: str, option: str, default: str = "") -> str:
    """A raw setting from luigi.cfg (and LUIGI_CONFIG_PATH), stripped."""
    value = luigi.configuration.get_config().get(section, option, default)
    return str(value if value is not None else default).strip()


def get_float(section: str, option: str, default: float) -> float:
    raw = get(section, option, str(default))
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"luigi.cfg [{section}] {option} = {raw!r} is not a number") from None


def get_list(section: str, option: str) -> list[str]:
    """A comma-separated setting as a list (empty entries dropped)."""
    return [item.strip() for item in get(section, option).split(",") if item.strip()]


def home() -> Path:
    """PIPELINE_HOME: raw/, work targets, logs and the default warehouse live here."""
    return Path(os.environ.get("PIPELINE_HOME") or get("pipeline", "home", "var")).absolute()


def raw_dir() -> Path:
    """The raw export: ``[pipeline] raw`` (set by ``pipeline run --raw``) or $PIPELINE_HOME/raw."""
    configured = get("pipeline", "raw")
    return Path(configured).absolute() if configured else home() / "raw"


def set_override(section: str, option: str, value: str) -> None:
    """Set a setting for this process and the worker processes it forks (CLI flags)."""
    cfg = luigi.configuration.get_config()
    if not cfg.has_section(section):
        cfg.add_section(section)
    cfg.set(section, option, value)


def logs_dir() -> Path:
    return home() / "logs"


def storage_root() -> str:
    """Where task targets live: a local directory or ``s3://bucket/prefix`` (no trailing /)."""
    root = os.environ.get("PIPELINE_STORAGE_ROOT") or get("storage", "root")
    return (root or str(home() / "work")).rstrip("/")


def warehouse_uri() -> str:
    uri = os.environ.get("PIPELINE_WAREHOUSE") or get("pipeline", "warehouse")
    return uri or f"duckdb://{home() / 'warehouse.duckdb'}"  # home() is absolute


def program_spec_path() -> str:
    return get("pipeline", "program", "programs/estimator/program.toml")


def executor_name() -> str:
    return get("pipeline", "executor", "local")


def respondent_key() -> bytes:
    """The secret key for hashing respondent ids.

    Read from the environment variable named by ``[cleansing] respondent_key_env``. On a
    laptop without it, a random key is created once under ``$PIPELINE_HOME/secrets`` (mode
    0600) so hashes stay stable between local runs; it never lives in the repository.
    """
    env_name = get("cleansing", "respondent_key_env", "PIPELINE_RESPONDENT_KEY")
    value = os.environ.get(env_name)
    if value:
        return value.encode()
    key_file = home() / "secrets" / "respondent.key"
    if not key_file.exists():
        key_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another worker process created it first
            pass
        else:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32))
    return key_file.read_text().strip().encode()
