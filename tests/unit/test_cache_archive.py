"""Archive unpacking refuses members that would land outside the entry."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from predictor.cache.archive import unpack
from predictor.cache.errors import CacheError


def make_tar(path: Path, members: list[tarfile.TarInfo]) -> Path:
    with tarfile.open(path, "w:gz") as bundle:
        for info in members:
            bundle.addfile(info, io.BytesIO(b"x" * info.size) if info.isfile() else None)
    return path


def file_member(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = 1
    return info


def link_member(name: str, target: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


def test_a_plain_tar_unpacks(tmp_path: Path):
    archive = make_tar(tmp_path / "m.tar.gz", [file_member("model/a.gguf")])
    unpack(archive, tmp_path / "out")
    assert (tmp_path / "out" / "model" / "a.gguf").read_bytes() == b"x"


@pytest.mark.parametrize(
    ("member", "message"),
    [
        (file_member("../up.txt"), "outside its root"),
        (file_member("/etc/abs.txt"), "outside its root"),
        (link_member("link", "/etc/passwd", tarfile.SYMTYPE), "link or special file"),
        (link_member("hard", "/etc/passwd", tarfile.LNKTYPE), "link or special file"),
    ],
)
def test_a_hostile_tar_member_is_refused(tmp_path: Path, member: tarfile.TarInfo, message: str):
    archive = make_tar(tmp_path / "m.tar.gz", [member])
    with pytest.raises(CacheError, match=message):
        unpack(archive, tmp_path / "out")
    assert not (tmp_path / "up.txt").exists()


def test_a_zip_member_with_dot_dot_is_refused(tmp_path: Path):
    archive = tmp_path / "m.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("../../up.txt", b"x")
    with pytest.raises(CacheError, match="outside its root"):
        unpack(archive, tmp_path / "out")


def test_a_zip_symlink_is_refused(tmp_path: Path):
    archive = tmp_path / "m.zip"
    info = zipfile.ZipInfo("link")
    info.external_attr = 0o120777 << 16
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr(info, "/etc/passwd")
    with pytest.raises(CacheError, match="has a link"):
        unpack(archive, tmp_path / "out")


def test_a_corrupt_archive_is_a_clear_error(tmp_path: Path):
    archive = tmp_path / "m.tar.gz"
    archive.write_bytes(b"not a tarball")
    with pytest.raises(CacheError, match=r"cannot unpack m\.tar\.gz"):
        unpack(archive, tmp_path / "out")
