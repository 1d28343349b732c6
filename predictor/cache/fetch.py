"""Bringing a model's bytes into a temporary directory, hashing what streams through.

http(s) is streamed and hashed in one pass by kzero itself (httpx ships with
KServe); s3://, gs:// and hf:// go through kserve-storage, the library behind
KServe's storage initializer, so credentials and endpoints are configured the
way KServe users already do (AWS_ENDPOINT_URL, GOOGLE_APPLICATION_CREDENTIALS,
HF_TOKEN...). Local sources are copied with the same hashing.
"""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from predictor.cache.archive import unpack
from predictor.cache.errors import CacheError
from predictor.cache.files import FileRecord, read_chunks, regular_files, tree_bytes, write_stream
from predictor.cache.progress import Progress
from predictor.cache.uri import ModelURI

# Called once a transfer's size is known (None: unknown). It may refuse the
# transfer (CacheError: too big for the budget or the volume); otherwise it
# returns the transfer's progress reporter.
TransferStart = Callable[[int | None], Progress]

HTTP_TIMEOUT = httpx.Timeout(connect=15.0, read=60.0, write=60.0, pool=15.0)
# httpx logs every request URL at INFO, query string included, and presigned
# URLs carry their credentials there.
logging.getLogger("httpx").setLevel(logging.WARNING)


def fetch(uri: ModelURI, into: Path, start: TransferStart) -> dict[str, FileRecord]:
    """Put the model's files under ``into``; returns the records hashed on the way.

    Files it returns no record for (unpacked archives, kserve-storage downloads)
    are hashed by the caller.
    """
    if uri.scheme in ("http", "https"):
        return _fetch_http(uri, into, start)
    if uri.is_remote:
        _fetch_with_kserve_storage(uri, into, start)
        return {}
    return _copy_local(uri.local_path(), into, start)


def _fetch_http(uri: ModelURI, into: Path, start: TransferStart) -> dict[str, FileRecord]:
    name = uri.file_name()
    target = into / name
    try:
        with (
            httpx.Client(timeout=HTTP_TIMEOUT, follow_redirects=True) as client,
            client.stream("GET", uri.text) as response,
        ):
            if response.status_code != 200:
                raise CacheError(f"GET {uri.redacted()} answered HTTP {response.status_code}")
            declared = response.headers.get("content-length")
            expected_size = int(declared) if declared and declared.isdigit() else None
            reporter = start(expected_size)
            record = write_stream(response.iter_bytes(1 << 20), target, reporter.advance)
            reporter.finish()
    except httpx.HTTPError as exc:
        raise CacheError(f"download of {uri.redacted()} failed: {exc}") from exc
    if expected_size is not None and record.size != expected_size:
        raise CacheError(
            f"download of {uri.redacted()} was cut short: {record.size} of {expected_size} bytes"
        )
    if uri.is_archive():
        check_pin(uri, record)
        unpack(target, into)
        target.unlink()
        return {}
    return {name: record}


def _fetch_with_kserve_storage(uri: ModelURI, into: Path, start: TransferStart) -> None:
    try:
        from kserve_storage import Storage
    except ImportError as exc:
        raise CacheError(
            f"{uri.scheme}:// needs kserve-storage: pip install 'kzero[storage]'"
        ) from exc
    reporter = start(None)
    # kserve-storage reports nothing while it works: watch the bytes land instead.
    with _watch_growth(into, reporter):
        try:
            Storage.download(uri.text, str(into))
        except Exception as exc:  # kserve-storage raises bare Exception for most failures
            raise CacheError(f"download of {uri.redacted()} failed: {exc}") from exc
    reporter.finish()


@contextmanager
def _watch_growth(directory: Path, reporter: Progress, every_s: float = 1.0) -> Iterator[None]:
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(every_s):
            reporter.advance(tree_bytes(directory) - reporter.done)

    watcher = threading.Thread(target=watch, name="cache-progress", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        stop.set()
        watcher.join()
        reporter.advance(tree_bytes(directory) - reporter.done)


def _copy_local(source: Path, into: Path, start: TransferStart) -> dict[str, FileRecord]:
    if not source.exists():
        raise CacheError(f"model not found: {source}")
    try:
        files = [source] if source.is_file() else regular_files(source)
    except ValueError as exc:
        raise CacheError(f"cannot cache {source}: {exc}") from exc
    root = source.parent if source.is_file() else source
    reporter = start(sum(path.stat().st_size for path in files))
    records: dict[str, FileRecord] = {}
    for path in files:
        relative = path.relative_to(root)
        target = into / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        record = write_stream(read_chunks(path), target, reporter.advance)
        records[relative.as_posix()] = FileRecord(relative.as_posix(), record.size, record.sha256)
        shutil.copymode(path, target)
    reporter.finish()
    return records


def check_pin(uri: ModelURI, record: FileRecord) -> None:
    """Fail closed when the bytes fetched are not the ones ``#sha256=`` names."""
    if uri.expected_sha256 is not None and record.sha256 != uri.expected_sha256:
        raise CacheError(
            f"sha256 mismatch for {uri.redacted()}: expected {uri.expected_sha256}, "
            f"got {record.sha256}; nothing was cached"
        )
