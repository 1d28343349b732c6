"""Writing and hashing files durably: what every fetch path shares."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class FileRecord:
    """One file of an entry: its path relative to the entry, size and digest."""

    path: str
    size: int
    sha256: str


def write_stream(
    chunks: Iterable[bytes], target: Path, advance: Callable[[int], None]
) -> FileRecord:
    """Write ``chunks`` to ``target``, hashing in the same pass, and fsync it."""
    digest = hashlib.sha256()
    size = 0
    with target.open("xb") as out:
        for chunk in chunks:
            out.write(chunk)
            digest.update(chunk)
            size += len(chunk)
            advance(len(chunk))
        out.flush()
        os.fsync(out.fileno())
    return FileRecord(target.name, size, digest.hexdigest())


def read_chunks(path: Path) -> Iterable[bytes]:
    with path.open("rb") as stream:
        while chunk := stream.read(CHUNK_BYTES):
            yield chunk


def hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    for chunk in read_chunks(path):
        digest.update(chunk)
    return digest.hexdigest()


def regular_files(root: Path) -> list[Path]:
    """Every regular file under ``root``, sorted; symlinks and special files are refused."""
    found: list[Path] = []
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            raise ValueError(f"{path.relative_to(root)} is a symbolic link")
        if path.is_file():
            found.append(path)
        elif not path.is_dir():
            raise ValueError(f"{path.relative_to(root)} is not a regular file")
    return found


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def tree_bytes(root: Path) -> int:
    """Bytes of the regular files under ``root`` (missing or vanishing files count 0)."""
    total = 0
    for dirpath, _, names in os.walk(root):
        for name in names:
            try:
                total += os.stat(os.path.join(dirpath, name), follow_symlinks=False).st_size
            except FileNotFoundError:
                continue
    return total
