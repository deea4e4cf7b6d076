"""One read-write DuckDB connection per warehouse file, shared by the loads and reads of
the tasks that run in the process of ``pipeline run`` (``shared()``; every task runs in
a thread of it: ``pipeline.worker``), instead of a connection per load.

Opening a DuckDB file reads its catalog and replays its WAL, and closing the last
connection checkpoints it: a good part of a small load's time. Within ``shared()`` the
tasks' threads each borrow a cursor of one connection (a cursor is DuckDB's connection
for one thread), with the table catalog read once (nothing else can change the schema
while this process holds the file's write lock). The connection is closed after
``IDLE_SECONDS`` with no cursor out, so that other processes (``pipeline status``; they
wait for the lock) get the file, and when ``shared()`` ends. Outside ``shared()`` every
load opens and closes its own connection.

Imports nothing heavy: ``duckdb`` only when a connection is opened.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

IDLE_SECONDS = 2.0


class _Entry:
    def __init__(self, con: Any) -> None:
        self.con = con
        self.catalog: dict[tuple[str, str], dict[str, str]] | None = None
        self.users = 0
        self.timer: threading.Timer | None = None


_lock = threading.RLock()
_enabled = 0
_entries: dict[str, _Entry] = {}
_writers: dict[str, threading.Lock] = {}


def writer(path: str) -> threading.Lock:
    """The lock a write transaction on ``path`` holds in this process, shared or not.

    DuckDB's transactions are optimistic: two threads' first loads into a new file both
    ``CREATE SCHEMA``/``CREATE TABLE`` and one fails at once ("Catalog write-write
    conflict"), and a load trusting the catalog another thread has not committed yet
    writes to a table it cannot see. One writer at a time per file; reads never wait.
    (Another process is kept out by the file's own lock.)"""
    with _lock:
        return _writers.setdefault(path, threading.Lock())


@contextlib.contextmanager
def shared() -> Iterator[None]:
    """Share one connection per file among the loads of this process until the end."""
    global _enabled
    with _lock:
        _enabled += 1
    try:
        yield
    finally:
        with _lock:
            _enabled -= 1
            if not _enabled:
                for path in list(_entries):
                    _close(path)


def is_shared() -> bool:
    return _enabled > 0


@contextlib.contextmanager
def borrow(path: str, opener: Callable[[], Any]) -> Iterator[tuple[Any, _Entry]]:
    """A cursor on the shared connection of ``path`` (opened by ``opener`` if needed),
    and its entry (``catalog`` is the cached table catalog, or None)."""
    with _lock:
        entry = _entries.get(path)
        if entry is None:
            entry = _entries[path] = _Entry(opener())
        if entry.timer is not None:
            entry.timer.cancel()
            entry.timer = None
        entry.users += 1
    cursor = entry.con.cursor()
    try:
        yield cursor, entry
    except BaseException:
        # After a failed load the cached catalog may be wrong: read it again next time.
        entry.catalog = None
        raise
    finally:
        cursor.close()
        with _lock:
            entry.users -= 1
            if not entry.users and _entries.get(path) is entry:
                entry.timer = threading.Timer(IDLE_SECONDS, _close_idle, args=(path, entry))
                entry.timer.daemon = True
                entry.timer.start()


def _close_idle(path: str, entry: _Entry) -> None:
    with _lock:
        if _entries.get(path) is entry and not entry.users:
            _close(path)


def _close(path: str) -> None:
    entry = _entries.pop(path)
    if entry.timer is not None:
        entry.timer.cancel()
    with contextlib.suppress(Exception):
        entry.con.close()
