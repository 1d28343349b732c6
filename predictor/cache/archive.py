"""Unpacking a model archive without letting a member escape the entry."""

from __future__ import annotations

import tarfile
import zipfile
from pathlib import Path, PurePosixPath

from predictor.cache.errors import CacheError


def unpack(archive: Path, destination: Path) -> None:
    """Extract ``archive`` into ``destination``; refuse absolute paths, ``..``, links, devices."""
    if archive.name.endswith(".zip"):
        _unzip(archive, destination)
    else:
        _untar(archive, destination)


def _check_member(name: str, archive: Path) -> None:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or not name:
        raise CacheError(f"archive {archive.name} has a member outside its root: '{name}'")


def _untar(archive: Path, destination: Path) -> None:
    try:
        with tarfile.open(archive) as bundle:
            members = bundle.getmembers()
            for member in members:
                _check_member(member.name, archive)
                if not (member.isfile() or member.isdir()):
                    raise CacheError(
                        f"archive {archive.name} has a link or special file: '{member.name}'"
                    )
            # The "data" filter re-checks everything above and strips modes we never want.
            bundle.extractall(destination, members=members, filter="data")
    except tarfile.TarError as exc:
        raise CacheError(f"cannot unpack {archive.name}: {exc}") from exc


def _unzip(archive: Path, destination: Path) -> None:
    try:
        with zipfile.ZipFile(archive) as bundle:
            for info in bundle.infolist():
                _check_member(info.filename, archive)
                # Unix mode bits in the upper half of external_attr: refuse symlinks.
                if (info.external_attr >> 16) & 0o170000 == 0o120000:
                    raise CacheError(f"archive {archive.name} has a link: '{info.filename}'")
            bundle.extractall(destination)
    except zipfile.BadZipFile as exc:
        raise CacheError(f"cannot unpack {archive.name}: {exc}") from exc
