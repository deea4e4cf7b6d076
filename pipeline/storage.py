"""Targets under the storage root: local paths or ``s3://`` URIs, behind luigi's targets.

Every write is atomic, so a killed step never leaves a half-written output that would
count as complete: ``LocalTarget.open("w")`` (temp file + rename) locally, one
``PutObject`` (luigi's ``S3Client.put_string``) on S3. On S3 each call is as few requests as
it can be (a read is one GET, a write one PUT, a removal one DELETE and one LIST): at a
delivery's width these calls are most of what the orchestrator does.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import shutil
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import luigi
import luigi.format
import pandas as pd

if TYPE_CHECKING:
    from luigi.contrib.s3 import S3Client

from pipeline.errors import StorageError

_local = threading.local()
_client_lock = threading.Lock()


def s3_client() -> S3Client:
    """This thread's luigi S3 client (boto3 resources are not thread-safe and creating
    them from the default session is not either: one per thread, made under a lock)."""
    client = getattr(_local, "s3", None)
    if client is None:
        from luigi.contrib.s3 import S3Client  # boto3: only when the storage is on S3

        with _client_lock:
            client = S3Client()
            client.s3  # noqa: B018 - build the boto3 resource now, under the lock
        _local.s3 = client
    return client


@functools.cache
def _file_target_class() -> type[luigi.target.FileSystemTarget]:
    from luigi.contrib.s3 import S3Target

    class FileS3Target(S3Target):
        """A file under an ``s3://`` storage root: ``exists`` is one HEAD request, or
        none inside ``listed()``. (luigi's also looks for a "directory" of that name when
        there is no such object: three requests for every target not written yet, the
        common case when luigi checks which tasks are complete.)"""

        def exists(self) -> bool:
            known = _listed_answer(self.path)
            if known is not None:
                return known
            bucket, key = self.fs._path_to_bucket_and_key(self.path)
            return self.fs._exists(bucket, key)

    return FileS3Target


_listings: dict[str, frozenset[str]] = {}  # prefix -> the URIs below it, while listed()


def _listed_answer(uri: str) -> bool | None:
    for prefix, uris in _listings.items():
        if uri.startswith(prefix):
            return uri in uris
    return None


@contextlib.contextmanager
def listed(uri: str) -> Iterator[None]:
    """Answer whether targets below the ``s3://`` directory ``uri`` exist from one
    listing of it (a LIST request per 1,000 objects) instead of a HEAD request each, until
    the block ends. For luigi's scheduling, which asks every task of a delivery whether it
    is complete, one after another: a thousand HEAD requests at 200 cohorts. What is
    written below ``uri`` inside the block is not seen: use it only while nothing runs.
    Local directories are not listed (a file's existence costs nothing there)."""
    if not is_s3(uri):
        yield
        return
    prefix = uri.rstrip("/") + "/"
    _listings[prefix] = frozenset(listdir(prefix))
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
    try:
        return s3_client().get_as_bytes(uri)
    except Exception as exc:
        if _not_found(exc):
            raise FileNotFoundError(f"no such object: {uri}") from exc
        raise


@_s3_errors
def write_bytes(uri: str, data: bytes) -> None:
    if is_s3(uri):
        s3_client().put_string(data, uri)
        return
    with target(uri).open("w") as fh:
        fh.write(data)


def _not_found(exc: BaseException) -> bool:
    response = getattr(exc, "response", None)
    code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
    return code in ("NoSuchKey", "404", "NotFound")


def _bucket_key(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def read_json(uri: str) -> Any:
    return json.loads(read_bytes(uri))


def write_json(uri: str, value: Any) -> None:
    write_bytes(uri, json.dumps(value, indent=2, sort_keys=True, default=str).encode() + b"\n")


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
    bucket, key = _bucket_key(uri)
    client = s3_client()
    if client._exists(bucket, key):
        return True
    below = client.s3.meta.client.list_objects_v2(
        Bucket=bucket, Prefix=key.rstrip("/") + "/", MaxKeys=1
    )
    return bool(below.get("KeyCount"))


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
    client = s3_client()
    client.s3.meta.client.delete_object(Bucket=bucket, Key=key)
    client.s3.Bucket(bucket).objects.filter(Prefix=key.rstrip("/") + "/").delete()


@_s3_errors
def listdir(uri: str) -> list[str]:
    """Full URIs of the files below ``uri`` (recursive; empty if it does not exist)."""
    if not is_s3(uri):
        root = Path(uri)
        return sorted(str(p) for p in root.rglob("*") if p.is_file()) if root.is_dir() else []
    return sorted(str(p) for p in s3_client().listdir(uri))


def append_text(uri: str, text: str, spool_dir: Path) -> None:
    """Append ``text`` to the log at ``uri``. Local files are appended to; an ``s3://`` log
    is kept in a local spool file under ``spool_dir`` (seeded from the object once) and
    uploaded whole after each append, so the storage root always holds the latest log."""
    if not is_s3(uri):
        path = Path(uri)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as fh:
            fh.write(text)
        return
    spool = spool_dir / uri.removeprefix("s3://")
    spool.parent.mkdir(parents=True, exist_ok=True)
    if not spool.exists() and exists(uri):
        spool.write_bytes(read_bytes(uri))
    with spool.open("a", encoding="utf-8") as fh:
        fh.write(text)
    write_bytes(uri, spool.read_bytes())


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
