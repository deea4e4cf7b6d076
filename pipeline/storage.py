"""Targets under the storage root: local paths or ``s3://`` URIs, behind luigi's targets.

Every write goes through ``target.open("w")``, which is atomic for both ``LocalTarget``
(temp file + rename) and ``S3Target`` (upload on close), so a killed step never leaves a
half-written output that would count as complete.
"""

from __future__ import annotations

import io
import json
from typing import Any

import luigi
import luigi.format
import pandas as pd
from luigi.contrib.s3 import S3Client, S3Target


def is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


def join(root: str, *parts: str) -> str:
    """Join path parts under a root, the same way for local paths and S3 URIs."""
    return "/".join([root.rstrip("/"), *(p.strip("/") for p in parts if p)])


def target(uri: str) -> luigi.target.FileSystemTarget:
    """A binary target for ``uri`` (no newline or encoding translation)."""
    if is_s3(uri):
        return S3Target(uri, format=luigi.format.Nop, client=S3Client())
    return luigi.LocalTarget(uri, format=luigi.format.Nop)


def read_bytes(uri: str) -> bytes:
    with target(uri).open("r") as fh:
        return fh.read()


def write_bytes(uri: str, data: bytes) -> None:
    with target(uri).open("w") as fh:
        fh.write(data)


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


def exists(uri: str) -> bool:
    return target(uri).exists()


def remove(uri: str) -> None:
    """Remove a file or a directory tree (``s3://`` prefixes recursively)."""
    tgt = target(uri)
    if tgt.exists():
        tgt.fs.remove(uri)


def listdir(uri: str) -> list[str]:
    """Full URIs of the files below ``uri`` (recursive; empty if it does not exist)."""
    tgt = target(uri)
    if not tgt.exists():
        return []
    return sorted(str(p) for p in tgt.fs.listdir(uri))
