"""Finding the export's CSV files and their checksums, without parsing them."""

from __future__ import annotations

import hashlib
import mmap
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
    return {rel: sha256(file_bytes(path)) for rel, path in csv_files(raw_dir)}


_MAP_FROM = 1 << 20  # files at least this large are memory-mapped


def file_bytes(path: Path) -> bytes | memoryview:
    """The bytes of a file; a large one memory-mapped (read in place from the page cache:
    no copy, no fresh memory to fault in), a small or empty one, or one on a file system
    that cannot map it, read."""
    with open(path, "rb") as file:
        if Path(path).stat().st_size >= max(_MAP_FROM, 1):  # (an empty file cannot be mapped)
            try:
                return memoryview(mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ))
            except (OSError, ValueError):
                pass
        return file.read()


def sha256(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()
