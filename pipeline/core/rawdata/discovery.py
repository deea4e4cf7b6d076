"""Finding the export's CSV files and their checksums, without parsing them."""

from __future__ import annotations

import hashlib
from pathlib import Path

from pipeline.errors import InputError


def csv_files(raw_dir: Path) -> list[tuple[str, Path]]:
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise InputError(f"the raw directory {raw_dir} does not exist")
    found = sorted(
        (path.relative_to(raw_dir).as_posix(), path)
        for path in raw_dir.rglob("*.csv")
        if path.is_file()
    )
    if not found:
        raise InputError(f"the raw directory {raw_dir} holds no *.csv file")
    return found


def checksums(raw_dir: Path) -> dict[str, str]:
    """Relative path → sha256 (hex) of every ``*.csv`` under ``raw_dir``, without parsing.

    The same files and digests as ``RawExport.files``; raises ``InputError`` when the
    directory is missing or holds no CSV file.
    """
    return {rel: sha256(path.read_bytes()) for rel, path in csv_files(raw_dir)}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
