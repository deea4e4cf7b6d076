#!/usr/bin/env python3
"""``fetch-raw s3://BUCKET/PREFIX/ [DEST]``: mirror the raw survey export into the container.

The pipeline reads the raw export from a local directory (``$PIPELINE_HOME/raw``); in the
cloud the survey team uploads it under an S3 prefix (docs/deploy.md, "Deliver a raw
export"). The scheduled run calls this first: every object under the prefix is
downloaded to DEST (default ``$PIPELINE_HOME/raw``) keeping its relative path, and files
in DEST that are no longer under the prefix are removed, so the run's input pin sees
exactly the export. Each file is written to a temporary name and renamed (atomic).

Exits 0 after printing what it fetched; 2 with a one-line reason when the URI is not an
``s3://`` prefix or nothing is there.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path, PurePosixPath


def parse_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://") or len(uri) <= len("s3://"):
        raise ValueError(f"{uri!r} is not an s3://BUCKET/PREFIX/ URI")
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return bucket, prefix


def fetch(uri: str, dest: Path, client=None) -> list[Path]:
    """Mirror every object under ``uri`` into ``dest``; return the local files written."""
    bucket, prefix = parse_uri(uri)
    if client is None:
        import boto3

        # boto3 reads only AWS_DEFAULT_REGION; ECS containers set AWS_REGION
        region = os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION")
        client = boto3.client("s3", region_name=region)
    keys = [
        obj["Key"]
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for obj in page.get("Contents", [])
        if not obj["Key"].endswith("/")
    ]
    if not keys:
        raise FileNotFoundError(
            f"no objects under {uri}: upload the raw export there first (docs/deploy.md)"
        )
    dest.mkdir(parents=True, exist_ok=True)
    wanted: list[Path] = []
    for key in sorted(keys):
        relative = PurePosixPath(key[len(prefix) :])
        if ".." in relative.parts or relative.is_absolute():
            raise ValueError(f"refusing key {key!r}: it would leave {dest}")
        local = dest.joinpath(*relative.parts)
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.with_name(f".{local.name}.part")
        client.download_file(bucket, key, str(tmp))
        os.replace(tmp, local)
        wanted.append(local)
    keep = set(wanted)
    for path in sorted(dest.rglob("*"), reverse=True):
        if path.is_file() and path not in keep:
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    return wanted


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fetch-raw", description=__doc__.splitlines()[0])
    parser.add_argument("uri", help="s3://BUCKET/PREFIX/ holding the raw export")
    parser.add_argument("dest", nargs="?", help="local directory (default $PIPELINE_HOME/raw)")
    args = parser.parse_args(argv)
    dest = Path(args.dest or Path(os.environ.get("PIPELINE_HOME") or "var") / "raw")
    try:
        files = fetch(args.uri, dest)
    except (ValueError, FileNotFoundError) as exc:
        print(f"fetch-raw: error: {exc}", file=sys.stderr)
        return 2
    print(f"fetch-raw: {len(files)} file(s) from {args.uri} into {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
