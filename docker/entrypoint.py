#!/usr/bin/env python3
"""Entrypoint of the pipeline image: turn injected secrets into files, then exec the command.

ECS injects secrets from Secrets Manager as environment variables (never plain
``environment`` values in the task definition). Two consumers want files instead:

- ``GOOGLE_APPLICATION_CREDENTIALS_JSON`` (the BigQuery service-account key) is written to
  ``$PIPELINE_SECRETS_DIR/gcp-service-account.json`` (mode 0600; the directory defaults to
  ``/tmp/secrets``, a task-local volume that disappears with the task), and
  ``GOOGLE_APPLICATION_CREDENTIALS`` points at it. The JSON variable itself is removed from
  the command's environment.
- ``LUIGID_DB_SECRET`` (the RDS-managed master secret: JSON with ``username`` and
  ``password``) with ``LUIGID_DB_HOST``, ``LUIGID_DB_PORT`` and ``LUIGID_DB_NAME`` become
  luigid's task history: a luigi config file with ``[task_history] db_connection`` and
  ``[scheduler] record_task_history = true``, merged with the file ``LUIGI_CONFIG_PATH``
  names (if any), written next to the key (mode 0600); ``LUIGI_CONFIG_PATH`` then points
  at it.

Then it replaces itself with the command (``os.execvp``), so ECS's SIGTERM reaches the
command directly. Standard library only.
"""

from __future__ import annotations

import configparser
import io
import json
import os
import sys
from pathlib import Path
from urllib.parse import quote

GCP_KEY_ENV = "GOOGLE_APPLICATION_CREDENTIALS_JSON"
DB_SECRET_ENV = "LUIGID_DB_SECRET"


class EntrypointError(Exception):
    """A secret or setting the container was given is unusable; the message says which."""


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by this user only (0600), replacing any old file."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def gcp_key_file(env: dict[str, str], secrets_dir: Path) -> None:
    raw = env.pop(GCP_KEY_ENV, "")
    if not raw.strip():
        return
    try:
        key = json.loads(raw)
    except ValueError:
        raise EntrypointError(
            f"{GCP_KEY_ENV} is not JSON: put the whole service-account key file in the "
            "Secrets Manager secret (docs/deploy.md, step 'Secrets')"
        ) from None
    if not isinstance(key, dict) or "client_email" not in key:
        raise EntrypointError(f"{GCP_KEY_ENV} is JSON but not a service-account key")
    path = secrets_dir / "gcp-service-account.json"
    write_private(path, raw)
    env["GOOGLE_APPLICATION_CREDENTIALS"] = str(path)


def db_connection(env: dict[str, str]) -> str:
    """The SQLAlchemy URL of luigid's task history, user and password URL-quoted."""
    try:
        secret = json.loads(env[DB_SECRET_ENV])
        user, password = secret["username"], secret["password"]
    except (ValueError, KeyError, TypeError):
        raise EntrypointError(
            f"{DB_SECRET_ENV} must be the RDS master secret (JSON with username and password)"
        ) from None
    missing = [name for name in ("LUIGID_DB_HOST", "LUIGID_DB_NAME") if not env.get(name)]
    if missing:
        raise EntrypointError(f"{DB_SECRET_ENV} is set but {', '.join(missing)} is not")
    port = env.get("LUIGID_DB_PORT") or "5432"
    return (
        f"postgresql+psycopg2://{quote(user, safe='')}:{quote(password, safe='')}"
        f"@{env['LUIGID_DB_HOST']}:{port}/{quote(env['LUIGID_DB_NAME'], safe='')}"
        "?sslmode=require"
    )


def task_history_config(env: dict[str, str], secrets_dir: Path) -> None:
    if not env.get(DB_SECRET_ENV, "").strip():
        env.pop(DB_SECRET_ENV, None)
        return
    url = db_connection(env)
    del env[DB_SECRET_ENV]
    # Keep ${ENV} references and %-escapes of the base file as written: luigi resolves them.
    cfg = configparser.RawConfigParser()
    cfg.optionxform = str  # type: ignore[assignment,method-assign]
    base = env.get("LUIGI_CONFIG_PATH")
    if base:
        if not Path(base).is_file():
            raise EntrypointError(f"LUIGI_CONFIG_PATH={base} does not exist")
        cfg.read(base)
    for section in ("scheduler", "task_history"):
        if not cfg.has_section(section):
            cfg.add_section(section)
    cfg.set("scheduler", "record_task_history", "true")
    # luigi interpolates %-references, so a quoted password's % must be doubled.
    cfg.set("task_history", "db_connection", url.replace("%", "%%"))
    out = io.StringIO()
    cfg.write(out)
    path = secrets_dir / "luigi.cfg"
    write_private(path, out.getvalue())
    env["LUIGI_CONFIG_PATH"] = str(path)


def main(argv: list[str]) -> int:
    if not argv:
        print("entrypoint: no command given", file=sys.stderr)
        return 2
    env = dict(os.environ)
    secrets_dir = Path(env.get("PIPELINE_SECRETS_DIR") or "/tmp/secrets")
    try:
        gcp_key_file(env, secrets_dir)
        task_history_config(env, secrets_dir)
    except EntrypointError as exc:
        print(f"entrypoint: error: {exc}", file=sys.stderr)
        return 2
    try:
        os.execvpe(argv[0], argv, env)
    except OSError as exc:
        print(f"entrypoint: cannot run {argv[0]!r}: {exc.strerror}", file=sys.stderr)
        return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
