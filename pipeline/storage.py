"""Targets under the storage root: local paths or ``s3://`` URIs, behind luigi's targets.

Every write is atomic, so a killed step never leaves a half-written output that would
count as complete: ``LocalTarget.open("w")`` (temp file + rename) locally, one
``PutObject`` (on the low-level client of luigi's ``S3Client``) on S3. On S3 each call is
as few requests as it can be (a read is one GET, a write one PUT, a removal one DELETE
and one LIST): at a delivery's width these calls are most of what the orchestrator does.
"""

from __future__ import annotations

import atexit
import bisect
import contextlib
import functools
import io
import json
import shutil
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import luigi
import luigi.format
import pandas as pd

if TYPE_CHECKING:
    from luigi.contrib.s3 import S3Client

from pipeline.errors import StorageError

_client: S3Client | None = None
_client_lock = threading.Lock()
POOL_CONNECTIONS = 64  # the run's threads share the client: keep their connections
SINGLE_PUT_BYTES = 256 * 1024**2  # a target written larger than this goes up in parts


def s3_client() -> S3Client:
    """The process's luigi S3 client, made once (under a lock) and shared by every thread.
    Only its low-level boto3 client is used (``_api``; thread-safe): boto3 resources are
    not thread-safe, and a resource made per thread or per call (luigi's ``get_as_bytes``,
    ``listdir``) costs more CPU than the request it sends."""
    global _client
    if _client is None:
        from botocore.config import Config  # boto3: only when the storage is on S3
        from luigi.contrib.s3 import S3Client

        with _client_lock:
            if _client is None:
                client = S3Client(config=Config(max_pool_connections=POOL_CONNECTIONS))
                client.s3  # noqa: B018 - build the boto3 resource now, under the lock
                _client = client
    return _client


def _api() -> Any:
    return s3_client().s3.meta.client


@functools.cache
def _file_target_class() -> type[luigi.target.FileSystemTarget]:
    from luigi.contrib.s3 import AtomicS3File, S3Target

    class PutS3File(AtomicS3File):
        """luigi's atomic S3 file (a local temp file, uploaded when closed) whose upload
        is one ``PutObject`` through the shared client. luigi's ``put_multipart`` builds a
        transfer manager, with its thread pool, per file: at 200 cohorts, 200 of them
        one after another while cleansing's outputs land. A file above
        ``SINGLE_PUT_BYTES`` still goes up in parts, luigi's way."""

        def move_to_final_destination(self) -> None:
            if Path(self.tmp_path).stat().st_size > SINGLE_PUT_BYTES:
                super().move_to_final_destination()
                return
            bucket, key = _bucket_key(self.path)
            with open(self.tmp_path, "rb") as body:
                _api().put_object(Bucket=bucket, Key=key, Body=body)

    class FileS3Target(S3Target):
        """A file under an ``s3://`` storage root: ``exists`` is one HEAD request, or
        none inside ``listed()``. (luigi's also looks for a "directory" of that name when
        there is no such object: three requests for every target not written yet, the
        common case when luigi checks which tasks are complete.) Written through
        ``PutS3File``."""

        def exists(self) -> bool:
            known = _listed_answer(self.path)
            if known is not None:
                return known
            return _object_exists(*_bucket_key(self.path))

        def open(self, mode: str = "r") -> Any:
            if mode == "w":
                return self.format.pipe_writer(PutS3File(self.path, self.fs, **self.s3_options))
            return super().open(mode)

    return FileS3Target


# Reads in flight where a command reads many small files (pipeline status, report, compare):
# on S3 each waits on the network, and the shared client keeps POOL_CONNECTIONS.
READERS = 16


class _Listing:
    """The URIs below one listed prefix, sorted: a file's existence, a "directory"'s and
    a listing below it are answered from them without a request."""

    def __init__(self, uris: list[str]) -> None:
        self.uris, self.known = uris, frozenset(uris)

    def below(self, uri: str) -> list[str]:
        prefix = uri.rstrip("/") + "/"
        start = bisect.bisect_left(self.uris, prefix)
        end = start
        while end < len(self.uris) and self.uris[end].startswith(prefix):
            end += 1
        return self.uris[start:end]


_listings: dict[str, _Listing] = {}  # prefix -> what is below it, while listed()


def _listing_of(uri: str) -> _Listing | None:
    for prefix, listing in list(_listings.items()):  # a copy: another thread may list
        if uri.startswith(prefix):
            return listing
    return None


def _listed_answer(uri: str) -> bool | None:
    listing = _listing_of(uri)
    return None if listing is None else uri in listing.known


@contextlib.contextmanager
def listed(uri: str) -> Iterator[None]:
    """Answer what is below the ``s3://`` directory ``uri`` from one listing of it (a LIST
    request per 1,000 objects) until the block ends: whether a target or a file exists
    (``exists``: instead of a HEAD request each) and what a directory below it holds
    (``listdir``: instead of a LIST each). For luigi's scheduling, which asks every task of
    a delivery whether it is complete, one after another (a thousand HEAD requests at 200
    cohorts), and for ``pipeline status``, which looks at every step of every cohort. What
    is written below ``uri`` inside the block is not seen: use it only while nothing runs
    (or, for a status, to see one moment of the run). Local directories are not listed (a
    file's existence costs nothing there)."""
    if not is_s3(uri):
        yield
        return
    prefix = uri.rstrip("/") + "/"
    _listings[prefix] = _Listing(listdir(prefix))
    try:
        yield
    finally:
        _listings.pop(prefix, None)


def is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


def join(root: str, *parts: str) -> str:
    """Join path parts under a root, the same way for local paths and S3 URIs."""
    return "/".join([root.rstrip("/"), *(p.strip("/") for p in parts if p)])


def _aws_problem(exc: BaseException) -> str | None:
    """One line for an AWS error (never request headers), or None if it is not one."""
    module = type(exc).__module__
    if not (module.startswith("botocore") or module.startswith("boto3")):
        return None
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and "Error" in response:
        err = response["Error"]
        return f"{err.get('Code', 'Error')}: {err.get('Message', '')}".strip()
    text = str(exc)
    if type(exc).__name__ == "NoCredentialsError":
        text += (
            " (set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or run where a role "
            "provides credentials)"
        )
    return text


def _s3_errors(fn):
    """An AWS failure on an ``s3://`` URI becomes a ``StorageError`` naming the URI."""

    @functools.wraps(fn)
    def wrapped(uri: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(uri, *args, **kwargs)
        except Exception as exc:
            problem = _aws_problem(exc) if is_s3(uri) else None
            if problem is None:
                raise
            raise StorageError(
                f"{uri}: cannot {fn.__name__.replace('_', ' ')}: {problem}"
            ) from None

    return wrapped


def target(uri: str) -> luigi.target.FileSystemTarget:
    """A binary target for ``uri`` (no newline or encoding translation)."""
    if is_s3(uri):
        return _file_target_class()(uri, format=luigi.format.Nop, client=s3_client())
    return luigi.LocalTarget(uri, format=luigi.format.Nop)


@_s3_errors
def read_bytes(uri: str) -> bytes:
    """The object's bytes; FileNotFoundError when there is none, on S3 as on disk."""
    if not is_s3(uri):
        return Path(uri).read_bytes()
    bucket, key = _bucket_key(uri)
    try:
        return _api().get_object(Bucket=bucket, Key=key)["Body"].read()
    except Exception as exc:
        if _not_found(exc):
            raise FileNotFoundError(f"no such object: {uri}") from exc
        raise


@_s3_errors
def write_bytes(uri: str, data: bytes) -> None:
    if is_s3(uri):
        bucket, key = _bucket_key(uri)
        _api().put_object(Bucket=bucket, Key=key, Body=data)
        return
    with target(uri).open("w") as fh:
        fh.write(data)


def _not_found(exc: BaseException) -> bool:
    response = getattr(exc, "response", None)
    code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
    return code in ("NoSuchKey", "404", "NotFound")


def _object_exists(bucket: str, key: str) -> bool:
    """One HEAD request through the shared client (luigi's ``S3Client._exists`` makes a
    boto3 resource object per call: more CPU than the request)."""
    try:
        _api().head_object(Bucket=bucket, Key=key)
    except Exception as exc:
        if _not_found(exc):
            return False
        raise
    return True


def _bucket_key(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def read_json(uri: str) -> Any:
    return json.loads(read_bytes(uri))


def json_bytes(value: Any) -> bytes:
    """How every JSON record of the storage root is written (sorted keys, indented)."""
    return json.dumps(value, indent=2, sort_keys=True, default=str).encode() + b"\n"


def write_json(uri: str, value: Any) -> None:
    write_bytes(uri, json_bytes(value))


def read_parquet(uri: str, columns: list[str] | None = None) -> pd.DataFrame:
    return pd.read_parquet(io.BytesIO(read_bytes(uri)), columns=columns)


def write_parquet(uri: str, frame: pd.DataFrame) -> None:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    write_bytes(uri, buffer.getvalue())


def read_table(uri: str) -> pd.DataFrame:
    """A results table as the program wrote it: ``.parquet`` or ``.csv`` (UTF-8)."""
    data = io.BytesIO(read_bytes(uri))
    if uri.endswith(".parquet"):
        return pd.read_parquet(data)
    return pd.read_csv(data)


@_s3_errors
def exists(uri: str) -> bool:
    """A file, or a "directory" (a prefix of ``s3://`` keys)."""
    if not is_s3(uri):
        return Path(uri).exists()
    listing = _listing_of(uri)
    if listing is not None:
        return uri in listing.known or bool(listing.below(uri))
    bucket, key = _bucket_key(uri)
    if _object_exists(bucket, key):
        return True
    below = _api().list_objects_v2(Bucket=bucket, Prefix=key.rstrip("/") + "/", MaxKeys=1)
    return bool(below.get("KeyCount"))


@_s3_errors
def version(uri: str) -> str:
    """What changes when the file is written again: its ETag on S3 (one HEAD request),
    its modification time and size on disk; FileNotFoundError when there is none."""
    if not is_s3(uri):
        stat = Path(uri).stat()
        return f"{stat.st_mtime_ns}-{stat.st_size}"
    bucket, key = _bucket_key(uri)
    try:
        return str(_api().head_object(Bucket=bucket, Key=key)["ETag"])
    except Exception as exc:
        if _not_found(exc):
            raise FileNotFoundError(f"no such object: {uri}") from exc
        raise


@_s3_errors
def remove(uri: str) -> None:
    """Remove a file or a directory tree (``s3://`` prefixes recursively); nothing there
    is no error."""
    if not is_s3(uri):
        path = Path(uri)
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
        return
    bucket, key = _bucket_key(uri)
    _api().delete_object(Bucket=bucket, Key=key)
    below = _keys(bucket, key.rstrip("/") + "/")
    for start in range(0, len(below), 1000):  # DeleteObjects takes 1,000 keys a call
        chunk = [{"Key": k} for k in below[start : start + 1000]]
        _api().delete_objects(Bucket=bucket, Delete={"Objects": chunk, "Quiet": True})


def _objects(bucket: str, prefix: str) -> Iterator[dict[str, Any]]:
    """Every object below ``prefix`` as the listing describes it (a LIST request per 1,000)."""
    pages = _api().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    for page in pages:
        yield from page.get("Contents", [])


def _keys(bucket: str, prefix: str) -> list[str]:
    """Every key below ``prefix``."""
    return [o["Key"] for o in _objects(bucket, prefix)]


@_s3_errors
def remove_file(uri: str) -> None:
    """Remove one file; nothing there is no error (on S3 one DELETE request)."""
    if is_s3(uri):
        bucket, key = _bucket_key(uri)
        _api().delete_object(Bucket=bucket, Key=key)
    else:
        Path(uri).unlink(missing_ok=True)


@_s3_errors
def listdir(uri: str) -> list[str]:
    """Full URIs of the files below ``uri`` (recursive; empty if it does not exist)."""
    if not is_s3(uri):
        root = Path(uri)
        return sorted(str(p) for p in root.rglob("*") if p.is_file()) if root.is_dir() else []
    listing = _listing_of(uri)
    if listing is not None:
        return listing.below(uri)
    bucket, key = _bucket_key(uri)
    return sorted(f"s3://{bucket}/{k}" for k in _keys(bucket, key.rstrip("/") + "/"))


@_s3_errors
def versions(uri: str) -> dict[str, str]:
    """``listdir`` with each file's ``version`` (what changes when it is written again: the
    ETag on S3, in the same LIST requests; modification time and size on disk)."""
    if not is_s3(uri):
        root = Path(uri)
        if not root.is_dir():
            return {}
        return {
            str(p): f"{st.st_mtime_ns}-{st.st_size}"
            for p in sorted(root.rglob("*"))
            if p.is_file() and (st := p.stat())
        }
    bucket, key = _bucket_key(uri)
    return {
        f"s3://{bucket}/{o['Key']}": str(o["ETag"]) for o in _objects(bucket, key.rstrip("/") + "/")
    }


def append_text(uri: str, text: str, spool_dir: Path, *, upload_within: float = 0.0) -> None:
    """Append ``text`` to the log at ``uri``. Local files are appended to; an ``s3://`` log
    is kept in a local spool file under ``spool_dir`` (seeded from the object once) and
    uploaded whole after the append, so the storage root holds the latest log: at once,
    or with ``upload_within`` seconds, within that time (lines appended meanwhile go up in
    the same upload; ``flush_appended`` uploads what is pending now)."""
    if not is_s3(uri):
        path = Path(uri)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as fh:
            fh.write(text)
        return
    spool = spool_dir / uri.removeprefix("s3://")
    spool.parent.mkdir(parents=True, exist_ok=True)
    if not spool.exists():
        try:  # one GET: a log an earlier run left
            spool.write_bytes(read_bytes(uri))
        except FileNotFoundError:
            _new_logs.add(uri)
    with spool.open("a", encoding="utf-8") as fh:
        fh.write(text)
    if upload_within > 0:
        _pending.later(uri, spool.read_bytes, upload_within)
    else:
        _pending.upload(uri, spool.read_bytes)


def write_within(uri: str, data: bytes, within: float) -> None:
    """Write ``data`` to ``uri``: on S3 within ``within`` seconds (0: now), in one request
    however often it is written again meanwhile, the last data winning (a task's timing
    record: "running" when it starts, its outcome when it ends, one PUT for a task that
    ends within the time); a local file at once. ``flush_appended`` writes it now."""
    if not is_s3(uri):
        write_bytes(uri, data)
        return
    with _records_lock:
        _records[uri] = data
    # Each upload sends what is latest when its turn comes: one the daemon thread took
    # as the record was written again cannot overwrite it with older bytes.
    latest = functools.partial(_records.__getitem__, uri)
    if within > 0:
        _pending.later(uri, latest, within)
        return
    try:
        _pending.upload(uri, latest)
    finally:
        with _records_lock:
            _records.pop(uri, None)  # written: an upload still waiting for it finds none


_records: dict[str, bytes] = {}  # write_within's latest bytes by URI, until written now
_records_lock = threading.Lock()


def started_here(uri: str) -> bool:
    """Whether this process started the ``s3://`` log at ``uri`` (no earlier run had
    left one when it first appended to it); asking forgets it."""
    try:
        _new_logs.remove(uri)
    except KeyError:
        return False
    return True


_new_logs: set[str] = set()


def flush_appended(uri: str | None = None) -> None:
    """Upload now what ``append_text`` or ``write_within`` left pending for ``uri`` (for
    every one if None)."""
    _pending.flush(uri)


class _PendingUploads:
    """Objects waiting for their upload, by URI, each with where its bytes come from (a
    log's spool file, read when it goes up; a record's latest bytes); a daemon thread
    uploads each when it is due, ``flush`` at once, and the process's exit flushes the
    rest. Uploads of one URI go one at a time, each reading its source inside its turn:
    the last upload holds every line appended, or the last record written, before it
    started; an upload now takes the URI's pending one with it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._due: dict[str, tuple[float, Callable[[], bytes]]] = {}
        self._turns: dict[str, threading.Lock] = {}
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def later(self, uri: str, source: Callable[[], bytes], within: float) -> None:
        with self._lock:
            when = self._due[uri][0] if uri in self._due else time.monotonic() + within
            self._due[uri] = (when, source)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="log-upload", daemon=True)
                self._thread.start()
                atexit.register(self._flush_at_exit)
        self._wake.set()

    def upload(self, uri: str, source: Callable[[], bytes]) -> None:
        with self._lock:
            self._due.pop(uri, None)  # this upload holds what it would have sent
            turn = self._turns.setdefault(uri, threading.Lock())
        with turn:
            write_bytes(uri, source())

    def flush(self, uri: str | None = None) -> None:
        for each, source in self._take(lambda u, _when: uri is None or u == uri):
            self.upload(each, source)

    def _flush_at_exit(self) -> None:
        with contextlib.suppress(Exception):  # the storage may be gone: nothing to tell
            self.flush()

    def _take(self, which: Callable[[str, float], bool]) -> list[tuple[str, Callable[[], bytes]]]:
        with self._lock:
            taken = [(u, source) for u, (when, source) in self._due.items() if which(u, when)]
            for u, _source in taken:
                del self._due[u]
            return taken

    def _loop(self) -> None:
        while True:
            now = time.monotonic()
            for uri, source in self._take(lambda _u, when, now=now: when <= now):
                with contextlib.suppress(Exception):  # the next line or the flush retries
                    self.upload(uri, source)
            with self._lock:
                wait = min((when for when, _ in self._due.values()), default=now + 60) - now
            self._wake.wait(timeout=max(wait, 0.05))
            self._wake.clear()


_pending = _PendingUploads()


def web_url(uri: str, *, root: str, base_url: str = "") -> str:
    """A link people can open for a file under the storage root: ``base_url`` + its path
    below ``root`` when a web front of the storage is configured, the S3 console for an
    ``s3://`` URI, else a ``file://`` URI."""
    if base_url and uri.startswith(root.rstrip("/") + "/"):
        return f"{base_url.rstrip('/')}/{uri[len(root.rstrip('/')) + 1 :]}"
    if is_s3(uri):
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        query = urllib.parse.urlencode({"prefix": key})
        return f"https://s3.console.aws.amazon.com/s3/object/{bucket}?{query}"
    return Path(uri).absolute().as_uri()
