"""Settings: luigi.cfg sections plus the environment, read in one place.

Nothing here is read at import time, so tests can point ``PIPELINE_HOME`` or
``LUIGI_CONFIG_PATH`` anywhere before calling these functions.
"""

from __future__ import annotations

import configparser
import contextlib
import difflib
import functools
import os
import re
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


def get_path(section: str, option: str, default: str = "") -> Path | None:
    """A path setting, relative paths resolved against the directory of the config file
    that names them (the default against the project's directory); None when empty."""
    value = get(section, option, default)
    if not value:
        return None
    path = Path(value).expanduser()
    if path.is_absolute():
        return path
    found = source(section, option)
    origin = Path(found).absolute() if found else project_config()
    base = origin.parent if origin is not None else Path.cwd()
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
        raise ConfigError(f"{where(section, option)} = {raw!r} is not a number") from None


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


# --- Where a setting comes from, and a check of the project's own sections ---------------
# ``pipeline.cli.main`` calls check() before any sub-command, so a typo in a key or a word
# where a number belongs is reported at once, with the file it was read from, instead of
# being ignored (a misspelt key) or failing a task later.

TEXT, NUMBER, WHOLE = "text", "a number", "a whole number"

# Every key of the pipeline's own sections and what its value must be. A key the code
# reads must be listed here, or check() reports it as unknown.
SETTINGS: dict[str, dict[str, str]] = {
    "pipeline": dict.fromkeys(
        ("home", "program", "executor", "warehouse", "raw", "logs_url"), TEXT
    ),
    "storage": {"root": TEXT},
    "run": {"log_upload_interval": NUMBER},
    "assistant": {"poll_interval": NUMBER, "workers": WHOLE},
    "cleansing": {
        "min_duration_seconds": NUMBER,
        "attention_expected": TEXT,
        "n_patients_min": NUMBER,
        "n_patients_max": NUMBER,
        "share_min": NUMBER,
        "share_max": NUMBER,
        "share_sum_tolerance": NUMBER,
        "respondent_key_env": TEXT,
    },
    # luigi reads [resources] as integers; the local executor's programs use this one.
    "resources": {"model_slots": WHOLE},
    "ecs": {
        **dict.fromkeys(
            (
                "cluster",
                "task_definition",
                "container_name",
                "launch_type",
                "platform_version",
                "subnets",
                "security_groups",
                "assign_public_ip",
                "log_group",
                "log_stream_prefix",
                "capacity_provider",
                "spot",
                "spot_capacity_provider",
                "on_demand_capacity_provider",
            ),
            TEXT,
        ),
        "attempts": WHOLE,
        **dict.fromkeys(
            (
                "poll_interval",
                "poll_max_interval",
                "log_lines",
                "capacity_retry_initial",
                "capacity_retry_max",
            ),
            NUMBER,
        ),
        "max_running": WHOLE,
    },
    "batch": {
        **dict.fromkeys(
            ("job_queue", "job_definition", "log_group", "spot", "spot_job_queue"), TEXT
        ),
        **dict.fromkeys(
            ("attempts", "timeout_grace", "poll_interval", "poll_max_interval", "log_lines"),
            NUMBER,
        ),
        "max_running": WHOLE,
    },
    "reaper": {
        **dict.fromkeys(("lease_ttl", "lease_interval", "deadline_grace", "workers"), NUMBER),
        "executors": TEXT,
    },
    # The local executor has no Spot; spot = first plays the protocol (docs/executors.md).
    "local": {"spot": TEXT},
    "cost": {
        f"{executor}_{capacity}{unit}_hour": NUMBER
        for executor in ("local", "ecs", "batch")
        for capacity in ("", "spot_")
        for unit in ("vcpu", "gib")
    },
    "warehouse": {"qa_warn_change": NUMBER, "qa_fail_change": NUMBER},
    "quality": {
        "history": WHOLE,
        "mix_min_rows": WHOLE,
        **dict.fromkeys(
            (
                "row_count_warn_change",
                "row_count_fail_change",
                "rejection_warn_increase",
                "rejection_fail_increase",
                "mix_warn_gap",
                "mix_fail_gap",
            ),
            NUMBER,
        ),
    },
    "bigquery": {
        "published_dataset": TEXT,
        "location": TEXT,
        **dict.fromkeys(
            (
                "retry_initial",
                "retry_maximum",
                "retry_deadline",
                "job_timeout",
                "load_table_ttl_hours",
            ),
            NUMBER,
        ),
    },
    "datadog": {
        "metric_namespace": TEXT,
        "statsd_host": TEXT,
        "statsd_port": WHOLE,
        # read by luigi's own Datadog metrics collector, should anyone switch to it
        **dict.fromkeys(("api_key", "app_key", "default_tags", "environment"), TEXT),
    },
}
# Sections luigi itself reads: not checked, but a near miss of one is reported.
LUIGI_SECTIONS = frozenset(
    ("core", "worker", "scheduler", "task_history", "retcode", "email", "smtp", "sendgrid",
     "batch_notifier", "execution_summary", "hdfs", "s3", "spark", "hadoop", "elasticsearch",
     "postgres", "redshift", "bigquery", "datadog", "resources", "webhdfs", "cmdline",
     "sge", "kubernetes", "logging", "DEFAULT")
)  # fmt: skip


def config_files() -> list[str]:
    """The config files luigi reads that exist, in its order (a later one wins): luigi.cfg
    (relative to the working directory, as luigi looks for it), then LUIGI_CONFIG_PATH."""
    # luigi keeps the list on its parser class; LUIGI_CONFIG_PATH is appended at import.
    project_config()
    paths = getattr(luigi.configuration.LuigiConfigParser, "_config_paths", ["luigi.cfg"])
    extra = os.environ.get("LUIGI_CONFIG_PATH", "")
    # (a .toml file goes to luigi's TOML parser: not checked here)
    return [
        p
        for p in dict.fromkeys([*paths, extra])
        if p and os.path.isfile(p) and not p.endswith(".toml")
    ]


def _read_file(path: str) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(default_section="\x00no-default\x00")
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # as luigi: keys keep case
    parser.read(path, encoding="utf-8")
    return parser


def source(section: str, option: str) -> str | None:
    """The config file whose value of ``[section] option`` is in force (the last one that
    sets it), or None when no file does (a default, or a command-line flag)."""
    found = None
    for path in config_files():
        try:
            parser = _read_file(path)
        except (configparser.Error, OSError, UnicodeDecodeError):
            continue
        if parser.has_option(section, option) or parser.has_option(
            section, option.replace("_", "-")
        ):
            found = path
    return found


def where(section: str, option: str) -> str:
    """``FILE [section] option`` for messages, naming the file the value was read from."""
    path = source(section, option)
    return f"{path} [{section}] {option}" if path else f"[{section}] {option} (set by a flag)"


def problems() -> list[str]:
    """Every problem in the pipeline's own sections of the config files, one line each:
    files that do not parse, unknown sections and keys (with the closest known name),
    references to unset environment variables, and values that must be numbers but are not."""
    found: list[str] = []
    for path in config_files():
        try:
            parser = _read_file(path)
        except (configparser.Error, UnicodeDecodeError) as exc:
            first = str(exc).strip().splitlines()[0]
            found.append(f"{path}: cannot be read as an INI file: {first}")
            continue
        for section in parser.sections():
            known = SETTINGS.get(section)
            if known is None:
                if section not in LUIGI_SECTIONS:
                    hint = _did_you_mean(section, [*SETTINGS, *LUIGI_SECTIONS - {"DEFAULT"}])
                    if hint:
                        found.append(f"{path}: unknown section [{section}]; did you mean [{hint}]?")
                continue
            for option in parser.options(section):
                if option.replace("-", "_") in known:
                    continue
                hint = _did_you_mean(option.replace("-", "_"), list(known))
                found.append(
                    f"{path}: [{section}] {option} is not a setting of the pipeline; "
                    + (f"did you mean {hint}?" if hint else f"known: {', '.join(known)}")
                )
    cfg = luigi.configuration.get_config()
    for section, known in SETTINGS.items():
        for option, kind in known.items():
            try:
                if not cfg.has_option(section, option):
                    continue
                value = str(cfg.get(section, option)).strip()
            except configparser.InterpolationError as exc:
                missing = re.search(r"environment variable (\S+?)\.", exc.message)
                found.append(
                    f"{where(section, option)}: the environment variable {missing[1]} it "
                    "refers to is not set"
                    if missing
                    else f"{where(section, option)}: {exc.message.splitlines()[0]}"
                )
                continue
            except configparser.Error:
                continue
            if kind != TEXT and not _parses(value, kind):
                found.append(f"{where(section, option)} = {value!r} is not {kind}")
    return list(dict.fromkeys(found))


def check() -> None:
    """Raise ConfigError listing every problem :func:`problems` finds (nothing if none)."""
    found = problems()
    if len(found) == 1:
        raise ConfigError(found[0])
    if found:
        raise ConfigError(
            f"{len(found)} problems in the configuration:\n" + "\n".join(f"  {p}" for p in found)
        )


def _did_you_mean(name: str, candidates: list[str]) -> str | None:
    matches = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return matches[0] if matches else None


def _parses(value: str, kind: str) -> bool:
    try:
        if kind == WHOLE:
            int(value)
        else:
            float(value)
    except ValueError:
        return False
    return True
