"""Leases: a worker's proof of life while its cloud tasks run.

A lease is a small JSON object at ``<storage root>/_leases/<lease id>.json``. A worker
process writes it before its first ``RunTask``/``SubmitJob``, renews it every
``[reaper] lease_interval`` seconds from a background thread while it has cloud tasks
running, and deletes it when the last one ends. Every task and job carries the lease id
(and the storage root it lives under) as tags, so ``pipeline reap`` can tell a task whose
worker is alive (fresh lease) from one a dead worker left behind (lease missing, or not
renewed for ``[reaper] lease_ttl`` seconds).

A restarted worker that re-attaches to a task a killed worker left running
(``CloudExecutor.reattach``) *adopts* that task's lease: it writes the document under
the task's own lease id too (with ``adopted_by``) and renews it with its own while it
follows the task. When the last task it follows under that id ends, the lease is left to
expire, and deleted when this process ends (``close_keepers``, at exit), not at once:
the killed worker's other tasks carry the same lease id, and one the restart has not
re-attached yet would be stopped by the next ``pipeline reap`` the moment the lease is
gone. The task's tags never change, and the reaper needs no new rule: a task nobody
adopted keeps its stale lease and is stopped once it expired.

When the worker is one of luigi's task processes (``--workers`` > 1) and luigi's main
process dies, the lease stops being renewed: the run it belonged to is over, whatever
this process still does.
"""

from __future__ import annotations

import atexit
import json
import logging
import multiprocessing
import os
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline import config, storage
from pipeline.layout import lease_uri

log = logging.getLogger("pipeline.executors.lease")

DEFAULT_TTL = 60.0
DEFAULT_INTERVAL = 10.0


def new_lease_id() -> str:
    """``<host>-<pid>-<random>``: readable in tags, unique across hosts and restarts."""
    host = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:40].strip("-") or "host"
    return f"{host}-{os.getpid()}-{secrets.token_hex(3)}"


def lease_settings() -> tuple[float, float]:
    """``([reaper] lease_interval, [reaper] lease_ttl)`` in seconds."""
    interval = config.get_float("reaper", "lease_interval", DEFAULT_INTERVAL)
    ttl = config.get_float("reaper", "lease_ttl", DEFAULT_TTL)
    return interval, ttl


def owner_check() -> Callable[[], bool]:
    """A function telling whether the process that owns this one's work is alive.

    Inside a luigi task process (a ``multiprocessing`` child) that is luigi's worker
    process: when it dies, this process is re-parented and ``getppid()`` changes. A
    top-level process (``--workers 1``) owns itself: the check is always true.
    """
    parent = multiprocessing.parent_process()
    if parent is None or parent.pid is None:
        return lambda: True
    expected = parent.pid
    return lambda: os.getppid() == expected


@dataclass(frozen=True)
class LeaseStatus:
    """What the reaper concludes about one lease."""

    lease_id: str
    fresh: bool
    reason: str  # why it is not fresh ("" when fresh)
    document: dict[str, Any] | None


class LeaseStore:
    """Reads, writes and deletes lease documents: S3 through a client of its own (boto3
    clients are thread-safe, the default session that luigi's S3 targets use is not),
    local roots through ``storage``."""

    def __init__(self, s3: Any = None) -> None:
        self._s3 = s3
        self._lock = threading.Lock()

    def _client(self) -> Any:
        with self._lock:
            if self._s3 is None:
                from pipeline.executors import aws

                self._s3 = aws.s3_client()
            return self._s3

    def write(self, uri: str, document: dict[str, Any]) -> None:
        body = json.dumps(document, indent=1, sort_keys=True).encode()
        if storage.is_s3(uri):
            bucket, key = _split(uri)
            self._client().put_object(Bucket=bucket, Key=key, Body=body,
                                      ContentType="application/json")  # fmt: skip
        else:
            storage.write_bytes(uri, body)

    def read(self, uri: str) -> dict[str, Any] | None:
        """The document, or None when there is none."""
        if storage.is_s3(uri):
            bucket, key = _split(uri)
            client = self._client()
            try:
                body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
            except client.exceptions.NoSuchKey:
                return None
            return json.loads(body)
        try:
            return json.loads(storage.read_bytes(uri))
        except FileNotFoundError:
            return None

    def delete(self, uri: str) -> None:
        if storage.is_s3(uri):
            bucket, key = _split(uri)
            self._client().delete_object(Bucket=bucket, Key=key)
        else:
            Path(uri).unlink(missing_ok=True)


def _split(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def read_lease(root: str, lease_id: str, store: LeaseStore | None = None) -> dict[str, Any] | None:
    """The lease document, or None when there is none."""
    return (store or LeaseStore()).read(lease_uri(root, lease_id))


def check_lease(
    root: str, lease_id: str, *, ttl: float, now: float, store: LeaseStore | None = None
) -> LeaseStatus:
    """Fresh iff the lease exists and was renewed at most ``ttl`` seconds before ``now``."""
    if not lease_id:
        return LeaseStatus(lease_id, False, "no lease tag", None)
    document = read_lease(root, lease_id, store)
    if document is None:
        return LeaseStatus(
            lease_id, False, f"lease {lease_id} is gone (its worker ended or never wrote it)", None
        )
    age = now - float(document.get("renewed_at", 0))
    if age > ttl:
        return LeaseStatus(
            lease_id,
            False,
            f"lease {lease_id} expired: last renewed {age:.0f}s ago by {document.get('host')} "
            f"pid {document.get('pid')} (lease_ttl {ttl:g}s)",
            document,
        )
    return LeaseStatus(lease_id, True, "", document)


class LeaseKeeper:
    """Holds one process's lease: written on the first ``acquire``, renewed from a
    daemon thread while any task holds it, deleted on the last ``release``."""

    def __init__(
        self,
        root: str,
        *,
        interval: float,
        ttl: float,
        owner_alive: Callable[[], bool] | None = None,
        store: LeaseStore | None = None,
    ) -> None:
        self.root, self.interval, self.ttl = root, interval, ttl
        self.store = store or LeaseStore()
        self.lease_id = new_lease_id()
        self.uri = lease_uri(root, self.lease_id)
        self.owner_alive = owner_alive or owner_check()
        self.owner_gone = threading.Event()
        self.renewals = 0
        self._holders = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started_at = datetime.now(UTC).isoformat(timespec="seconds")
        self._adopted: dict[str, int] = {}  # lease ids of re-attached tasks → holders
        self._disowned: set[str] = set()  # adopted ones no task holds now: deleted by close

    def adopt(self, lease_id: str) -> None:
        """Also keep ``lease_id`` (a killed worker's) fresh while this lease is held."""
        with self._lock:
            self._adopted[lease_id] = self._adopted.get(lease_id, 0) + 1
            self._disowned.discard(lease_id)
        self._write()

    def disown(self, lease_id: str) -> None:
        """One re-attached task of ``lease_id`` ended; its last one stops the renewals.
        The lease is left to expire, not deleted: other tasks of the killed worker carry it
        and may not be re-attached yet (a restart takes them one by one), and a reap in
        between would stop them at once. Those nobody re-attaches within ``ttl`` are reaped
        like any orphan; ``close`` deletes it."""
        with self._lock:
            left = self._adopted.get(lease_id, 0) - 1
            if left > 0:
                self._adopted[lease_id] = left
                return
            self._adopted.pop(lease_id, None)
            self._disowned.add(lease_id)

    def acquire(self) -> str:
        """Hold the lease (writing it first if nobody held it); returns its id."""
        with self._lock:
            self._holders += 1
            if self._holders == 1:
                try:
                    self._write()
                except BaseException:
                    self._holders -= 1
                    raise
                self._stop = threading.Event()
                self._thread = threading.Thread(
                    target=self._renew_loop, args=(self._stop,), name="lease", daemon=True
                )
                self._thread.start()
        return self.lease_id

    def release(self) -> None:
        """Stop holding the lease; the last holder stops the renewals and deletes it."""
        with self._lock:
            self._holders = max(0, self._holders - 1)
            if self._holders:
                return
            self._stop.set()
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=5)
        self._delete(self.uri)

    def close(self) -> None:
        """This process is done: stop renewing, delete our lease and every adopted one."""
        with self._lock:
            self._holders = 0
            self._stop.set()
            thread, self._thread = self._thread, None
            adopted = [*self._adopted, *self._disowned]
            self._adopted, self._disowned = {}, set()
        if thread is not None:
            thread.join(timeout=5)
        for uri in [self.uri, *(lease_uri(self.root, lease_id) for lease_id in adopted)]:
            self._delete(uri)

    def _delete(self, uri: str) -> None:
        try:
            self.store.delete(uri)
        except Exception as exc:  # an expired lease is as good as a deleted one
            log.warning("could not delete lease %s: %s", uri, exc)

    def _write(self) -> None:
        now = time.time()
        document = self._document(now)
        self.store.write(self.uri, document)
        for lease_id in list(self._adopted):  # a copy: acquire() holds the lock here
            self.store.write(
                lease_uri(self.root, lease_id),
                {**document, "lease": lease_id, "adopted_by": self.lease_id},
            )
        self.renewals += 1

    def _document(self, now: float) -> dict[str, Any]:
        return {
            "lease": self.lease_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started_at": self._started_at,
            "renewed_at": now,
            "renewed_at_utc": datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds"),
            "interval": self.interval,
            "ttl": self.ttl,
        }

    def _renew_loop(self, stop: threading.Event) -> None:
        while not stop.wait(self.interval):
            if not self.owner_alive():
                log.warning("lease %s: the worker that owns this process is gone", self.lease_id)
                self.owner_gone.set()
                return
            try:
                self._write()
            except Exception as exc:  # try again next interval; the TTL covers a few misses
                log.warning("could not renew lease %s: %s", self.uri, exc)


_keepers: dict[tuple[int, str], LeaseKeeper] = {}
_keepers_lock = threading.Lock()


def keeper(root: str) -> LeaseKeeper:
    """This process's lease keeper for ``root`` (a new one after ``fork``)."""
    key = (os.getpid(), root)
    with _keepers_lock:
        if key not in _keepers:
            interval, ttl = lease_settings()
            _keepers[key] = LeaseKeeper(root, interval=interval, ttl=ttl)
        return _keepers[key]


def close_keepers() -> None:
    """Close this process's keepers (at exit: every entry point, luigi's CLI included)."""
    with _keepers_lock:
        mine = [key for key in _keepers if key[0] == os.getpid()]
        closing = [_keepers.pop(key) for key in mine]
    for each in closing:
        each.close()


atexit.register(close_keepers)
