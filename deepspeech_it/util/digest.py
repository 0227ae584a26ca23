"""Digests that identify input files in stage records and caches."""

from __future__ import annotations

import hashlib
from pathlib import Path

# Hashing a multi-gigabyte archive on every run would cost minutes; past this size a file is identified by its
# size and modification time, which every tool that rewrites it changes.
FULL_HASH_LIMIT = 64 * 1024 * 1024


def file_digest(path: str | Path) -> str:
    path = Path(path)
    stat = path.stat()
    if stat.st_size > FULL_HASH_LIMIT:
        return f"size={stat.st_size};mtime_ns={stat.st_mtime_ns}"
    return "sha256=" + sha256_of(path)


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
