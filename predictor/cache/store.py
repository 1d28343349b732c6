"""The model cache on a volume that many pods may share.

Layout under the cache root::

    entries/<key>/            complete entries (plus the marker, written last)
    tmp/<key>.<random>/       fetches in progress; never read as a model
    locks/<key>.lock          held exclusively by the one process fetching <key>
    locks/<key>.use           held shared by every process serving <key>

A fetch writes into ``tmp/`` on the same filesystem, fsyncs, renames the
directory into ``entries/`` and only then writes the marker, so an entry without
a marker is incomplete by definition and is never served. Processes that want
the same URI queue on its ``.lock``; when one gets it, it looks again and finds
the entry the first one completed. Eviction takes ``.use`` exclusively, which
fails while any server holds it, so an entry in use is never evicted.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from predictor.cache import locks
from predictor.cache.entry import Entry, find_problems, read_entry, write_marker
from predictor.cache.errors import CacheError
from predictor.cache.fetch import TransferStart, check_pin, fetch
from predictor.cache.files import FileRecord, fsync_dir, hash_file, regular_files, tree_bytes
from predictor.cache.progress import Progress, format_bytes
from predictor.cache.uri import ModelURI

logger = logging.getLogger(__name__)

# Cold starts wait this long for another pod's download before giving up.
DEFAULT_LOCK_TIMEOUT_S = 3600.0
_WAIT_LOG_EVERY_S = 10.0


@dataclass
class Resolution:
    """Where a model's bytes are, and what it took to get them there."""

    path: Path
    result: str  # hit | miss | local (the names of kzero_cache_lookups_total{result})
    downloaded_bytes: int = 0
    seconds: dict[str, float] = field(default_factory=dict)  # phase -> duration


class ModelCache:
    """Resolves model URIs to local paths under ``root``.

    ``max_bytes`` is the size budget for complete entries (None: the volume's
    free space is the limit). ``progress_bar`` draws a terminal bar instead of
    periodic log lines. ``downloading`` is called when this process, holding
    the fetch lock, starts a download: the lookup is a miss from then on,
    while the download itself may take minutes.
    """

    def __init__(
        self,
        root: Path,
        *,
        max_bytes: int | None = None,
        progress_bar: bool = False,
        lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S,
        downloading: Callable[[], None] | None = None,
    ) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self._progress_bar = progress_bar
        self._downloading = downloading
        self._lock_timeout_s = lock_timeout_s
        self._entries = root / "entries"
        self._tmp = root / "tmp"
        self._locks = root / "locks"
        # Shared "in use" locks, held for the life of the process that serves them.
        self._held: dict[str, int] = {}

    @property
    def writable(self) -> bool:
        """False on a read-only mount: serving pods only read, a warm Job writes."""
        probe = self.root if self.root.exists() else self.root.parent
        return os.access(probe, os.W_OK)

    # -- lookups -----------------------------------------------------------

    def lookup(self, uri: ModelURI) -> Entry | None:
        return read_entry(self._entries / uri.key)

    def entries(self) -> list[Entry]:
        """Complete entries, least recently used first."""
        if not self._entries.is_dir():
            return []
        found = [read_entry(path) for path in self._entries.iterdir()]
        return sorted((e for e in found if e is not None), key=lambda e: e.last_used)

    def incomplete(self) -> list[Path]:
        """Entry directories without a marker and temporary fetch directories."""
        paths: list[Path] = []
        if self._entries.is_dir():
            paths += [p for p in self._entries.iterdir() if read_entry(p) is None]
        if self._tmp.is_dir():
            paths += list(self._tmp.iterdir())
        return sorted(paths)

    def in_use(self, key: str) -> bool | None:
        """True while any process serves the entry; None where that cannot be told (read-only)."""
        if key in self._held:
            return True
        try:
            return locks.is_held(self._locks / f"{key}.use")
        except OSError:
            return None

    # -- resolving ---------------------------------------------------------

    def resolve(self, uri: ModelURI, *, verify: bool) -> Resolution:
        """Serve-time resolution: local URIs in place, remote ones through the cache.

        ``verify`` re-hashes a cached entry before it is used; a corrupt entry
        is fetched again (or, on a read-only cache, fails the start).
        """
        if not uri.is_remote:
            path = uri.local_path()
            if not path.exists():
                raise CacheError(f"model not found: {path}")
            return Resolution(path, "local")
        return self.ensure(uri, verify=verify)

    def ensure(self, uri: ModelURI, *, verify: bool, force: bool = False) -> Resolution:
        """The complete entry for ``uri``, fetched now when missing (``force``: always)."""
        started = time.monotonic()
        self._hold_use(uri.key)
        entry = None if force else self.lookup(uri)
        seconds = {"cache": time.monotonic() - started}
        if entry is not None:
            problems = self._timed_problems(entry, verify, seconds)
            if not problems:
                self._touch(entry)
                return Resolution(entry.model_path, "hit", seconds=seconds)
            if not self.writable:
                raise CacheError(
                    f"the cached copy of {entry.uri} is damaged ({'; '.join(problems)}) and the "
                    f"cache at {self.root} is read-only: run 'kzero cache warm --force {entry.uri}'"
                )
            logger.warning(
                "cached copy of %s is damaged (%s): fetching it again",
                entry.uri,
                "; ".join(problems),
            )
            try:
                return self._fetch_once(uri, force=True, seconds=seconds)
            except CacheError as exc:
                raise CacheError(
                    f"the cached copy of {entry.uri} is damaged ({'; '.join(problems)}) and "
                    f"fetching it again failed: {exc}"
                ) from exc
        if not self.writable:
            raise CacheError(
                f"{uri.redacted()} is not in the cache at {self.root}, which is read-only here: "
                "warm it first ('kzero cache warm', the chart's warm Job)"
            )
        return self._fetch_once(uri, force=force, seconds=seconds)

    def _timed_problems(self, entry: Entry, verify: bool, seconds: dict[str, float]) -> list[str]:
        started = time.monotonic()
        problems = find_problems(entry, full=verify)
        if verify:
            seconds["verify"] = time.monotonic() - started
        return problems

    def _fetch_once(self, uri: ModelURI, *, force: bool, seconds: dict[str, float]) -> Resolution:
        self._make_dirs()
        # Seconds waited when the last "waiting" line went out; None: never waited.
        logged_at: float | None = None

        def waiting(waited_s: float) -> None:
            nonlocal logged_at
            if logged_at is None or waited_s - logged_at >= _WAIT_LOG_EVERY_S:
                logged_at = waited_s
                logger.info(
                    "waiting for another process fetching %s (%s arrived so far)",
                    uri.redacted(),
                    format_bytes(sum(tree_bytes(p) for p in self._tmp.glob(f"{uri.key}.*"))),
                )

        with locks.exclusive(
            self._locks / f"{uri.key}.lock", timeout_s=self._lock_timeout_s, waiting=waiting
        ):
            entry = self.lookup(uri)
            if entry is not None and (logged_at is not None or not force):
                # Another process completed it while this one waited.
                self._touch(entry)
                return Resolution(entry.model_path, "hit", seconds=seconds)
            self._discard_leftovers(uri.key)
            if self._downloading is not None:
                self._downloading()
            started = time.monotonic()
            files, downloaded = self._fetch_into_entry(uri)
            seconds["download"] = time.monotonic() - started
            logger.info(
                "cached %s: %s in %.1fs",
                uri.redacted(),
                format_bytes(downloaded),
                seconds["download"],
            )
            entry = Entry(
                uri.key, self._entries / uri.key, uri.redacted(), tuple(files), time.time()
            )
            return Resolution(entry.model_path, "miss", downloaded, seconds)

    def _fetch_into_entry(self, uri: ModelURI) -> tuple[list[FileRecord], int]:
        staging = Path(tempfile.mkdtemp(prefix=f"{uri.key}.", dir=self._tmp))
        try:
            hashed = fetch(uri, staging, self._transfer_starter(f"fetch {uri.redacted()}", uri.key))
            files = self._records(staging, hashed)
            size = sum(record.size for record in files)
            self._check_pin(uri, files)
            self._make_room(size, keep=uri.key)
            fsync_dir(staging)
            target = self._entries / uri.key
            os.rename(staging, target)
            fsync_dir(self._entries)
            (self._locks / f"{uri.key}.use").touch()
            write_marker(target, uri.key, uri.redacted(), files)
            return files, size
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise CacheError(
                    f"no space left on the cache volume at {self.root} while fetching "
                    f"{uri.redacted()}; the partial download was removed"
                ) from exc
            raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _records(self, staging: Path, hashed: dict[str, FileRecord]) -> list[FileRecord]:
        try:
            paths = regular_files(staging)
        except ValueError as exc:
            raise CacheError(f"refusing to cache the download: {exc}") from exc
        if not paths:
            raise CacheError("the download produced no files")
        records = []
        for path in paths:
            relative = path.relative_to(staging).as_posix()
            record = hashed.get(relative)
            if record is None:
                record = FileRecord(relative, path.stat().st_size, hash_file(path))
            records.append(record)
        return records

    @staticmethod
    def _check_pin(uri: ModelURI, files: list[FileRecord]) -> None:
        if uri.expected_sha256 is None or uri.is_archive():
            return  # an archive's pin was checked on the archive bytes
        if len(files) != 1:
            raise CacheError(
                f"{uri.redacted()} has {len(files)} files; a #sha256= pin needs a URI naming one file"
            )
        check_pin(uri, files[0])

    # -- eviction ----------------------------------------------------------

    def _make_room(self, needed: int, *, keep: str) -> None:
        if self.max_bytes is None:
            return  # the volume itself is the limit; ENOSPC is reported as such
        if needed > self.max_bytes:
            raise CacheError(
                f"the model is {format_bytes(needed)}, larger than the cache budget of "
                f"{format_bytes(self.max_bytes)}; nothing was cached"
            )
        others = [e for e in self.entries() if e.key != keep]
        excess = sum(e.total_bytes for e in others) + needed - self.max_bytes
        if excess <= 0:
            return
        evicted = self._evict(others, excess, dry_run=False)
        if sum(e.total_bytes for e in evicted) < excess:
            raise CacheError(
                f"the cache budget of {format_bytes(self.max_bytes)} cannot fit "
                f"{format_bytes(needed)} more: the remaining entries are in use; nothing was cached"
            )

    def prune(
        self, *, max_bytes: int | None = None, dry_run: bool
    ) -> tuple[list[Entry], list[Path]]:
        """Evict least-recently-used entries beyond the budget, and abandoned leftovers.

        Returns the entries and leftover paths removed (or, with ``dry_run``, that would be).
        """
        budget = self.max_bytes if max_bytes is None else max_bytes
        leftovers = [p for p in self.incomplete() if self._abandoned(p)]
        if not dry_run:
            for path in leftovers:
                shutil.rmtree(path, ignore_errors=True)
        entries = self.entries()
        excess = sum(e.total_bytes for e in entries) - budget if budget is not None else 0
        evicted = self._evict(entries, excess, dry_run=dry_run) if excess > 0 else []
        return evicted, leftovers

    def _evict(self, candidates: list[Entry], excess: int, *, dry_run: bool) -> list[Entry]:
        evicted: list[Entry] = []
        freed = 0
        for entry in candidates:  # least recently used first
            if freed >= excess:
                break
            with self._unused(entry.key) as free:
                if not free:
                    continue
                if not dry_run:
                    logger.info("evicting %s (%s)", entry.uri, format_bytes(entry.total_bytes))
                    self._remove(entry.path)
                evicted.append(entry)
                freed += entry.total_bytes
        return evicted

    @contextmanager
    def _unused(self, key: str) -> Iterator[bool]:
        """Yields True while holding the entry's use lock exclusively (nobody serves it)."""
        if key in self._held:
            yield False
            return
        fd = locks.try_exclusive(self._locks / f"{key}.use")
        try:
            yield fd is not None
        finally:
            if fd is not None:
                os.close(fd)

    def _abandoned(self, path: Path) -> bool:
        """An incomplete directory whose fetcher is gone (its fetch lock is free)."""
        key = path.name.split(".", 1)[0]
        return not locks.is_held(self._locks / f"{key}.lock")

    def _discard_leftovers(self, key: str) -> None:
        """Under the fetch lock: whatever a killed fetcher of ``key`` left behind goes."""
        stale = [*self._tmp.glob(f"{key}.*"), self._entries / key]
        for path in stale:
            if path.exists():
                logger.info("removing %s left by an earlier fetch that did not finish", path)
                self._remove(path)

    def _remove(self, path: Path) -> None:
        # Rename first so the entry disappears at once, even if the delete is slow.
        trash = self._tmp / f"trash.{path.name}.{os.getpid()}.{time.monotonic_ns()}"
        os.rename(path, trash)
        shutil.rmtree(trash, ignore_errors=True)

    # -- bookkeeping -------------------------------------------------------

    def verify(self, entry: Entry) -> list[str]:
        return find_problems(entry, full=True)

    def _hold_use(self, key: str) -> None:
        if key in self._held:
            return
        path = self._locks / f"{key}.use"
        if self.writable:
            self._make_dirs()
            path.touch()
        fd = locks.hold_shared(path)
        if fd is not None:
            self._held[key] = fd

    def release(self) -> None:
        """Drop this process's use locks (they also go when the process exits)."""
        for fd in self._held.values():
            os.close(fd)
        self._held.clear()

    def _touch(self, entry: Entry) -> None:
        if self.writable:
            os.utime(entry.path)

    def _make_dirs(self) -> None:
        for path in (self._entries, self._tmp, self._locks):
            path.mkdir(parents=True, exist_ok=True)

    def _transfer_starter(self, label: str, key: str) -> TransferStart:
        def start(total: int | None) -> Progress:
            if total is not None:
                self._make_room(total, keep=key)
                free = shutil.disk_usage(self._tmp).free
                if total > free:
                    raise CacheError(
                        f"no space left on the cache volume at {self.root}: the model needs "
                        f"{format_bytes(total)}, {format_bytes(free)} is free; nothing was cached"
                    )
            return Progress(label, total, bar=self._progress_bar)

        return start
