"""Model-cache faults with real processes, a real loopback HTTP origin and real mounts."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from bench.harness.process import PredictorProcess

from .cache_helpers import (
    KZERO,
    MODEL_FILE,
    SERVED_NAME,
    answers,
    assert_serves_a_cache_hit,
    entry_files,
    kzero_cache,
    leftovers,
    lookups,
    model_data,
    mounted,
    read_only_view,
    require_root_mounts,
    sha256,
)
from .origin import serving

pytestmark = pytest.mark.integration

PATH = f"/models/{MODEL_FILE}"
DATA = model_data()
DIGEST = sha256(DATA)


def serve(uri: str, cache_dir: Path, *extra: str) -> PredictorProcess:
    return PredictorProcess(["--model", uri, "--cache-dir", str(cache_dir), *extra])


def test_four_cold_starts_on_one_uri_download_it_once(tmp_path: Path):
    # ~2.5 s per transfer, so that all four starts overlap the first download.
    with serving({PATH: DATA}, rate=40e6) as origin:
        servers = [serve(origin.url + PATH, tmp_path) for _ in range(4)]
        try:
            for server in servers:
                server.wait_ready(SERVED_NAME)
            assert origin.started[PATH] == 1
            assert origin.completed[PATH] == 1
            for server in servers:
                assert answers(server.url)
            assert sorted(lookups(s.url, "miss") for s in servers) == [0, 0, 0, 1]
            assert sorted(lookups(s.url, "hit") for s in servers) == [0, 1, 1, 1]
        finally:
            for server in servers:
                server.stop()
    assert [sha256(p.read_bytes()) for p in entry_files(tmp_path)] == [DIGEST]


def test_a_killed_downloader_is_taken_over_and_its_partial_file_never_served(tmp_path: Path):
    with serving({PATH: DATA}, rate=8e6) as origin:
        first = subprocess.Popen(
            [KZERO, "cache", "--cache-dir", str(tmp_path), "warm", origin.url + PATH],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_for_partial_download(tmp_path, at_least=2 << 20)
        # Queues on the first one's lock.
        second = serve(origin.url + PATH, tmp_path)
        try:
            time.sleep(1.0)
            assert entry_files(tmp_path) == []  # nothing complete yet: nothing to serve
            first.send_signal(signal.SIGKILL)
            first.wait()
            origin.rate = None
            second.wait_ready(SERVED_NAME)
            assert answers(second.url)
            assert "left by an earlier fetch that did not finish" in second.log()
            assert lookups(second.url, "miss") == 1
        finally:
            second.stop()
        assert origin.started[PATH] == 2
        assert origin.completed[PATH] == 1
    assert [sha256(p.read_bytes()) for p in entry_files(tmp_path)] == [DIGEST]
    assert leftovers(tmp_path) == []


def _wait_for_partial_download(cache_dir: Path, at_least: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        partial = [p for p in (cache_dir / "tmp").glob("*/*") if p.is_file()]
        if partial and partial[0].stat().st_size >= at_least:
            return
        time.sleep(0.05)
    raise TimeoutError("the first download never got going")


def test_a_flipped_byte_is_reported_then_refetched_or_refused_when_the_origin_is_gone(
    tmp_path: Path,
):
    with serving({PATH: DATA}) as origin:
        assert kzero_cache(tmp_path, "warm", origin.url + PATH).returncode == 0
        _flip_one_byte(entry_files(tmp_path)[0])
        verify = kzero_cache(tmp_path, "verify")
        assert verify.returncode == 1
        assert "DAMAGED" in verify.stdout and "sha256 differs" in verify.stdout

        server = serve(origin.url + PATH, tmp_path)
        try:
            server.wait_ready(SERVED_NAME)
            assert answers(server.url)
            assert "is damaged" in server.log()
        finally:
            server.stop()
        assert origin.started[PATH] == 2
        assert kzero_cache(tmp_path, "verify").returncode == 0

        _flip_one_byte(entry_files(tmp_path)[0])
        origin.close()
        gone = serve(origin.url + PATH, tmp_path)
        assert gone.wait_exit() == 1
        assert "is damaged" in gone.log() and "fetching it again failed" in gone.log()


def _flip_one_byte(path: Path) -> None:
    with path.open("r+b") as stream:
        stream.seek(len(DATA) // 2)
        byte = stream.read(1)
        stream.seek(len(DATA) // 2)
        stream.write(bytes([byte[0] ^ 0xFF]))


def test_an_expected_digest_that_does_not_match_fails_closed(tmp_path: Path):
    with serving({PATH: DATA}) as origin:
        server = serve(f"{origin.url}{PATH}#sha256={'0' * 64}", tmp_path)
        assert server.wait_exit() == 1
    assert "sha256 mismatch" in server.log()
    assert entry_files(tmp_path) == []
    assert leftovers(tmp_path) == []


def test_a_matching_expected_digest_is_accepted(tmp_path: Path):
    with serving({PATH: DATA}) as origin:
        warm = kzero_cache(tmp_path, "warm", f"{origin.url}{PATH}#sha256={DIGEST}")
    assert warm.returncode == 0, warm.stderr
    assert [sha256(p.read_bytes()) for p in entry_files(tmp_path)] == [DIGEST]


def test_a_model_over_the_size_budget_is_refused_and_leaves_nothing(tmp_path: Path):
    with serving({PATH: DATA}) as origin:
        warm = kzero_cache(tmp_path, "warm", "--max-bytes", "10MB", origin.url + PATH)
        assert origin.started[PATH] == 1 and origin.completed[PATH] == 0
    assert warm.returncode == 1
    assert "larger than the cache budget" in warm.stderr
    assert entry_files(tmp_path) == [] and leftovers(tmp_path) == []


def test_a_full_volume_gives_a_clear_error_and_no_partial_entry(tmp_path: Path):
    require_root_mounts()
    # No Content-Length: the size is unknown up front, so the write itself hits ENOSPC.
    with (
        mounted("-t", "tmpfs", "-o", "size=40m", "tmpfs", target=tmp_path / "small") as small,
        serving({PATH: DATA}, declare_length=False) as origin,
    ):
        warm = kzero_cache(small, "warm", origin.url + PATH)
        assert warm.returncode == 1
        assert "no space left on the cache volume" in warm.stderr
        assert entry_files(small) == [] and leftovers(small) == []


def test_a_read_only_cache_serves_what_was_warmed_and_refuses_the_rest(tmp_path: Path):
    require_root_mounts()
    writable = tmp_path / "pvc"
    with serving({PATH: DATA, "/other.gguf": DATA}) as origin:
        assert kzero_cache(writable, "warm", origin.url + PATH).returncode == 0
        with read_only_view(writable, tmp_path / "ro") as read_only:
            assert_serves_a_cache_hit(serve(origin.url + PATH, read_only))
            missing = serve(origin.url + "/other.gguf", read_only)
            assert missing.wait_exit() == 1
            assert "read-only" in missing.log()
        assert origin.started[PATH] == 1


@pytest.mark.parametrize(
    "uri",
    [
        "http://127.0.0.1:9/models/..%2f..%2fetc%2fpasswd",
        "pvc://claim/../../etc/passwd",
        "s3://bucket/models/../../secret",
    ],
)
def test_path_traversal_in_a_uri_is_refused(tmp_path: Path, uri: str):
    warm = kzero_cache(tmp_path, "warm", uri)
    assert warm.returncode == 1
    assert "path traversal refused" in warm.stderr


def test_path_traversal_in_an_archive_member_is_refused(tmp_path: Path):
    archive = _tar_with_member("../escaped.txt", b"outside")
    cache = tmp_path / "cache"
    with serving({"/model.tar.gz": archive}) as origin:
        warm = kzero_cache(cache, "warm", origin.url + "/model.tar.gz")
    assert warm.returncode == 1
    assert "outside its root" in warm.stderr
    assert not list(tmp_path.rglob("escaped.txt"))
    assert entry_files(cache) == [] and leftovers(cache) == []


def _tar_with_member(name: str, data: bytes) -> bytes:
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as bundle:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        bundle.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_an_archive_is_unpacked_into_its_entry(tmp_path: Path):
    archive = _tar_with_member(f"model/{MODEL_FILE}", DATA)
    with serving({"/model.tar.gz": archive}) as origin:
        warm = kzero_cache(tmp_path, "warm", f"{origin.url}/model.tar.gz#sha256={sha256(archive)}")
    assert warm.returncode == 0, warm.stderr
    files = entry_files(tmp_path)
    assert [p.name for p in files] == [MODEL_FILE]
    assert sha256(files[0].read_bytes()) == DIGEST
