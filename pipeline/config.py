"""Settings: luigi.cfg sections plus the environment, read in one place.

Nothing here is read at import time, so tests can point ``PIPELINE_HOME`` or
``LUIGI_CONFIG_PATH`` anywhere before calling these functions.
"""

from __future__ import annotations

import configparser
import contextlib
import functools
import os
import secrets
from pathlib import Path

import luigi.configuration

from pipeline.errors import ConfigError

CONFIG_FILE = "luigi.cfg"


@functools.cache
def project_config() -> Path | None:
    """The project's ``luigi.cfg``: the first one found from the working directory upwards
    (so ``pipeline`` works from any directory of a checkout), else the one next to an
    editable install of this package. Added to luigi's config paths once, before any
    ``LUIGI_CONFIG_PATH`` file, which still overrides it."""
    start = Path.cwd()
    candidates = [d / CONFIG_FILE for d in (start, *start.parents)]
    candidates.append(Path(__file__).resolve().parent.parent / CONFIG_FILE)
    found = next((c for c in candidates if c.is_file()), None)
    if found is not None:
        parser = luigi.configuration.get_config()
        paths = [Path(p).absolute() for p in parser._config_paths]
        if found.absolute() not in paths:
            # luigi reads later paths last: insert ours before LUIGI_CONFIG_PATH's file.
            override = os.environ.get("LUIGI_CONFIG_PATH")
            at = len(paths)
            if override and Path(override).absolute() in paths:
                at = paths.index(Path(override).absolute())
            parser._config_paths.insert(at, str(found))
            parser.reload()
    return found


def get(section: str, option: str, default: str = "") -> str:
    """A raw setting from luigi.cfg (and LUIGI_CONFIG_PATH), stripped."""
    project_config()
    value = luigi.configuration.get_config().get(section, option, default)
    return str(value if value is not None else default).strip()


def defined_in(section: str, option: str) -> Path | None:
    """The config file that gives ``[section] option`` its value (the last one read that
    sets it), or None when no file sets it."""
    project_config()
    found = None
    for name in luigi.configuration.get_config()._config_paths:
        path = Path(name)
        if not path.is_file():
            continue
        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read(path, encoding="utf-8")
        except configparser.Error:
            continue
        if parser.has_option(section, option):
            found = path.absolute()
    return found


def get_path(section: str, option: str, default: str = "") -> Path | None:
    """A path setting, relative paths resolved against the directory of the config file
    that names them (the default against the project's directory); None when empty."""
    value = get(section, option, default)
    if not value:
        return None
    path = Path(value).expanduser()
    if path.is_absolute():
        return path
    source = defined_in(section, option) or project_config()
    base = source.parent if source is not None else Path.cwd()
    return (base / path).absolute()


def project_dir() -> Path:
    """The directory of the project's luigi.cfg (the working directory without one)."""
    found = project_config()
    return found.parent.absolute() if found is not None else Path.cwd().absolute()


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
    """PIPELINE_HOME: raw/, work targets, logs and the default warehouse live here
    (``[pipeline] home``, relative to the file that sets it, when the variable is unset)."""
    env = os.environ.get("PIPELINE_HOME")
    if env:
        return Path(env).expanduser().absolute()
    return get_path("pipeline", "home", "var") or project_dir() / "var"


def raw_dir() -> Path:
    """The default raw export: ``[pipeline] raw``, else ``$PIPELINE_HOME/raw``."""
    return get_path("pipeline", "raw") or home() / "raw"


def local_logs_dir() -> Path:
    """Where this machine spools logs before they reach the storage root."""
    return home() / "logs"


def storage_root() -> str:
    """Where task targets live: a local directory or ``s3://bucket/prefix`` (no trailing /):
    ``PIPELINE_STORAGE_ROOT``, else ``[storage] root``, else ``$PIPELINE_HOME/work``."""
    env = os.environ.get("PIPELINE_STORAGE_ROOT")
    if env:
        root = env if env.startswith("s3://") else str(Path(env).expanduser().absolute())
    else:
        configured = get("storage", "root")
        if configured.startswith("s3://"):
            root = configured
        else:
            root = str(get_path("storage", "root") or home() / "work")
    return root.rstrip("/")


def warehouse_uri() -> str:
    uri = os.environ.get("PIPELINE_WAREHOUSE") or get("pipeline", "warehouse")
    return uri or f"duckdb://{home() / 'warehouse.duckdb'}"  # home() is absolute


def program_spec_path() -> str:
    """``[pipeline] program``, resolved against the file that sets it."""
    path = get_path("pipeline", "program", "programs/estimator/program.toml")
    return str(path)


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
        _create_key_file(key_file)
    return _read_key_file(key_file)


KEY_MIN_CHARS = 32


def _create_key_file(key_file: Path) -> None:
    """Write a new random key atomically: a temp file of its own (O_EXCL, fsynced), then
    ``link`` to the final name, which fails when another process won the race. A kill
    at any moment leaves either no key file or a whole one (plus, at worst, a temp
    file nobody reads)."""
    key_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = key_file.with_name(f".{key_file.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
            fh.flush()
            os.fsync(fh.fileno())
        # FileExistsError: another worker process created it first; theirs is used.
        with contextlib.suppress(FileExistsError):
            os.link(tmp, key_file)
    finally:
        tmp.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # make the new name durable too
        dir_fd = os.open(key_file.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _read_key_file(key_file: Path) -> bytes:
    """The key in ``key_file``; a ConfigError naming the file when it is unusable."""
    try:
        text = key_file.read_bytes().decode("ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        problem = f"cannot be read as text ({type(exc).__name__}: {exc})"
    else:
        if not text:
            problem = "is empty"
        elif len(text) < KEY_MIN_CHARS or any(c.isspace() or not c.isprintable() for c in text):
            problem = (
                f"does not hold a key (expected one line of at least {KEY_MIN_CHARS} "
                "printable characters)"
            )
        else:
            return text.encode()
    env_name = get("cleansing", "respondent_key_env", "PIPELINE_RESPONDENT_KEY")
    raise ConfigError(
        f"the respondent key file {key_file} {problem}. Delete it to have a new random key "
        f"made on the next run (respondent hashes of earlier local runs then change), "
        f"or set {env_name} to the key"
    )
