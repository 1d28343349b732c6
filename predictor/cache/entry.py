"""A cache entry on disk: its files and the completion marker written last."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from predictor.cache.files import FileRecord, fsync_dir, hash_file

MARKER = ".kzero-entry.json"
MARKER_FORMAT = 1


@dataclass(frozen=True)
class Entry:
    """A complete entry: every file was fsynced before its marker appeared."""

    key: str
    path: Path
    uri: str
    files: tuple[FileRecord, ...]
    created: float

    @property
    def total_bytes(self) -> int:
        return sum(record.size for record in self.files)

    @property
    def model_path(self) -> Path:
        """A single-file model is the file itself; otherwise the entry's directory."""
        if len(self.files) == 1:
            return self.path / self.files[0].path
        return self.path

    @property
    def last_used(self) -> float:
        """Touched on every use by a writable cache; read-only users cannot record use."""
        try:
            return self.path.stat().st_mtime
        except FileNotFoundError:
            return 0.0


def write_marker(path: Path, key: str, uri: str, files: list[FileRecord]) -> None:
    """Write the marker atomically and durably: it is what makes the entry complete."""
    body = {
        "format": MARKER_FORMAT,
        "key": key,
        "uri": uri,
        "created": time.time(),
        "files": [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in files],
    }
    staging = path / (MARKER + ".tmp")
    with staging.open("w") as out:
        json.dump(body, out, indent=1)
        out.flush()
        os.fsync(out.fileno())
    os.replace(staging, path / MARKER)
    fsync_dir(path)


def read_entry(path: Path) -> Entry | None:
    """The entry at ``path``, or None when it has no valid marker (incomplete)."""
    try:
        body = json.loads((path / MARKER).read_text())
        if body.get("format") != MARKER_FORMAT:
            return None
        files = tuple(
            FileRecord(str(f["path"]), int(f["size"]), str(f["sha256"])) for f in body["files"]
        )
        return Entry(str(body["key"]), path, str(body["uri"]), files, float(body["created"]))
    except (FileNotFoundError, NotADirectoryError, ValueError, KeyError, TypeError):
        return None


def find_problems(entry: Entry, *, full: bool = True) -> list[str]:
    """What differs between the entry's files and its marker; empty when intact.

    ``full=False`` checks presence and sizes only (no read of the data).
    """
    problems: list[str] = []
    expected = {record.path for record in entry.files}
    for record in entry.files:
        file = entry.path / record.path
        try:
            size = file.stat().st_size
        except FileNotFoundError:
            problems.append(f"{record.path}: missing")
            continue
        if size != record.size:
            problems.append(f"{record.path}: {size} bytes, expected {record.size}")
        elif full and hash_file(file) != record.sha256:
            problems.append(f"{record.path}: sha256 differs from the one recorded at fetch time")
    for file in entry.path.rglob("*"):
        relative = file.relative_to(entry.path).as_posix()
        if file.is_file() and relative != MARKER and relative not in expected:
            problems.append(f"{relative}: not part of the entry")
    return problems
