"""File locks that die with their holder.

``flock`` locks belong to the open file, so the kernel drops them when the
holding process exits for any reason, SIGKILL included: a crashed downloader
never leaves a lock behind, and the next waiter takes over at once. On NFS
(typical for ReadWriteMany volumes) Linux maps ``flock`` onto NFS byte-range
locks, which the server releases when the client's lease lapses.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from predictor.cache.errors import CacheError

logger = logging.getLogger(__name__)


@contextmanager
def exclusive(
    path: Path,
    *,
    timeout_s: float,
    waiting: Callable[[float], None] | None = None,
    poll_s: float = 0.2,
) -> Iterator[None]:
    """Hold an exclusive lock on ``path``; ``waiting(seconds)`` is called while blocked."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o664)
    try:
        started = time.monotonic()
        while not _try_lock(fd, fcntl.LOCK_EX):
            waited = time.monotonic() - started
            if waited > timeout_s:
                raise CacheError(
                    f"gave up after {timeout_s:.0f}s waiting for the lock {path}: another "
                    "process is still fetching this model"
                )
            if waiting is not None:
                waiting(waited)
            time.sleep(poll_s)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def try_exclusive(path: Path) -> int | None:
    """An exclusively locked descriptor, or None when someone holds the lock."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o664)
    if _try_lock(fd, fcntl.LOCK_EX):
        return fd
    os.close(fd)
    return None


def is_held(path: Path) -> bool:
    """Whether another open file holds a lock on ``path`` right now (a probe, not a hold)."""
    fd = try_exclusive(path)
    if fd is None:
        return True
    os.close(fd)
    return False


def hold_shared(path: Path) -> int | None:
    """A shared lock held until the descriptor is closed (here: for the process's life).

    Needs only read access, so it works on a read-only mount when the file exists.
    Returns None when the file cannot be opened (a read-only cache without one).
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    fcntl.flock(fd, fcntl.LOCK_SH)
    return fd


def _try_lock(fd: int, operation: int) -> bool:
    try:
        fcntl.flock(fd, operation | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True
