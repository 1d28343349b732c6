"""Shared prompt prefixes' KV state on the prefix cache volume, across scale to zero.

The llama.cpp engine saves a prefix's KV cells here (llama.cpp's sequence
state, ``llama_state_seq_get_data``) when two different requests have shared
it, and a new pod restores the most recently used ones before it reports
ready, so the first request after a cold start skips the shared prefill.

A file holds one prefix: a header, the token ids, and the KV cells of exactly
those tokens. Its **key** holds only what decides the KV contents: the model
file's sha256 (which fixes the weights and the tokenizer), the llama-cpp-python
release (which pins the llama.cpp build and its state format), the CPU kernels
llama.cpp was built with (``llama_print_system_info``), the KV cache types and
the flash-attention setting, and the token ids. Nothing auto-sized per pod (the
context length, the number of sequences) is in it: a pod with 8 sequences
restores what a pod with 4 saved. llama.cpp's own state embeds the stream
count, so the file keeps only the sequence's stream block and
``state_payload`` rebuilds the envelope for this context.

Every file is checked before llama.cpp sees it: the magic, the format version,
the key, the lengths and a sha256 over the token ids and the cells. A file that
fails is ignored with a log line and a ``kzero_prefix_cache_files_total`` count,
never loaded: a flipped byte cannot change an answer. Writes go to a temporary
file, are fsynced and renamed under an exclusive lock, and a size budget
evicts the least recently used files first. On a read-only mount the store
only reads.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import queue
import struct
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import asdict, dataclass
from pathlib import Path

from predictor.cache.errors import CacheError
from predictor.cache.files import fsync_dir, hash_file, write_stream
from predictor.cache.locks import exclusive

logger = logging.getLogger(__name__)

MAGIC = b"KZPREFIX"
FORMAT_VERSION = 1
SUFFIX = ".kvprefix"
_PREAMBLE = struct.Struct("<8sII")  # magic, format version, header length
_MAX_HEADER_BYTES = 64 << 10
# llama.cpp's sequence state envelope (llama-context.cpp, state_seq_get_data at
# the pinned release): uint32 magic, int32 seq_id, then the KV cache's uint32
# stream count and one block per stream, an empty stream being a uint32 0.
_LLAMA_STATE_MAGIC = 0xAF143CD8
_U32 = struct.Struct("<I")
_ENVELOPE = struct.Struct("<IiI")
_LOCK_TIMEOUT_S = 30.0

# Results counted in kzero_prefix_cache_files_total.
RESTORED, SAVED, EVICTED = "restored", "saved", "evicted"
CORRUPT, FOREIGN, REJECTED, SAVE_FAILED = "corrupt", "foreign", "rejected", "save_failed"
FILE_RESULTS = (RESTORED, SAVED, EVICTED, CORRUPT, FOREIGN, REJECTED, SAVE_FAILED)

OnFileEvent = Callable[[str], None]


class PrefixFileError(Exception):
    """A prefix file that must not be loaded; ``result`` says which kind of bad."""

    def __init__(self, result: str, message: str) -> None:
        super().__init__(message)
        self.result = result


@dataclass(frozen=True)
class PrefixKey:
    """What decides a prefix's KV contents, apart from its token ids."""

    model_sha256: str
    llama_cpp_python: str
    system_info: str
    type_k: int
    type_v: int
    flash_attn_type: int

    def fingerprint(self) -> str:
        canonical = json.dumps(asdict(self), sort_keys=True).encode()
        return hashlib.sha256(canonical).hexdigest()


@dataclass(frozen=True)
class StoredPrefix:
    """A checked prefix file: its tokens and its KV block, ready to restore."""

    path: Path
    tokens: list[int]
    block: bytes


def state_block(payload: bytes | memoryview, seq_id: int) -> bytes | None:
    """The one non-empty stream block of a split-KV sequence state, or None when the
    state has another shape (a hybrid or sliding-window cache), which is not saved."""
    if len(payload) < _ENVELOPE.size:
        return None
    magic, _, n_stream = _ENVELOPE.unpack_from(payload)
    if magic != _LLAMA_STATE_MAGIC or not 0 <= seq_id < n_stream:
        return None
    start = _ENVELOPE.size + _U32.size * seq_id
    end = len(payload) - _U32.size * (n_stream - seq_id - 1)
    empty = bytes(_U32.size)
    if start >= end or payload[_ENVELOPE.size : start] != empty * seq_id:
        return None
    if payload[end:] != empty * (n_stream - seq_id - 1) or payload[start:end][:4] == empty:
        return None
    return bytes(payload[start:end])


def state_payload(block: bytes, n_stream: int) -> bytes:
    """A sequence state for a context of ``n_stream`` streams holding ``block``.

    llama.cpp reads any non-empty stream block into the destination sequence's
    own stream (``state_read_sinfo``: ``strm = seq_to_stream[seq_id]``), so the
    block goes first and every other stream is empty.
    """
    empty = bytes(_U32.size) * (n_stream - 1)
    return _ENVELOPE.pack(_LLAMA_STATE_MAGIC, 0, n_stream) + block + empty


def tokens_digest(tokens: list[int]) -> str:
    return hashlib.sha256(struct.pack(f"<{len(tokens)}i", *tokens)).hexdigest()


class PrefixStore:
    """One model's prefix files in a directory shared with other models and pods."""

    def __init__(
        self,
        directory: Path,
        key: PrefixKey,
        *,
        max_bytes: int,
        on_event: OnFileEvent | None = None,
    ) -> None:
        self.directory = directory
        self.key = key
        self._fingerprint = key.fingerprint()
        self._max_bytes = max_bytes
        self._on_event = on_event or (lambda result: None)
        self.writable = max_bytes > 0 and _ensure_writable(directory)
        self._known: set[str] = set()  # token digests on disk or queued: saved once
        self._queue: queue.Queue[tuple[list[int], bytes] | None] = queue.Queue()
        self._writer: threading.Thread | None = None

    def _name(self, tokens: list[int]) -> str:
        return f"{self._fingerprint[:16]}-{tokens_digest(tokens)[:40]}{SUFFIX}"

    # ---- reading ---------------------------------------------------------

    def load_recent(self, limit: int) -> list[StoredPrefix]:
        """Up to ``limit`` of this model's prefixes, most recently used first, each checked."""
        if not self.directory.is_dir():
            return []
        found: list[StoredPrefix] = []
        foreign = 0
        paths = sorted(self.directory.glob(f"*{SUFFIX}"), key=_mtime, reverse=True)
        for path in paths:
            if not path.name.startswith(self._fingerprint[:16]):
                foreign += 1  # another model's, or another llama.cpp build's
                continue
            if len(found) >= limit:
                continue
            try:
                prefix = self._read(path)
            except PrefixFileError as exc:
                logger.warning("prefix cache: ignoring %s: %s", path, exc)
                self._on_event(exc.result)
                continue
            except OSError as exc:
                logger.warning("prefix cache: cannot read %s: %s", path, exc)
                self._on_event(CORRUPT)
                continue
            self._known.add(tokens_digest(prefix.tokens))
            found.append(prefix)
        if foreign:
            logger.info(
                "prefix cache: %d file(s) in %s belong to other models or llama.cpp builds; "
                "left alone",
                foreign,
                self.directory,
            )
            for _ in range(foreign):
                self._on_event(FOREIGN)
        return found

    def _read(self, path: Path) -> StoredPrefix:
        data = path.read_bytes()
        if len(data) < _PREAMBLE.size:
            raise PrefixFileError(CORRUPT, "truncated before its header")
        magic, version, header_length = _PREAMBLE.unpack_from(data)
        if magic != MAGIC:
            raise PrefixFileError(CORRUPT, "not a kzero prefix file")
        if version != FORMAT_VERSION:
            raise PrefixFileError(
                FOREIGN, f"format version {version}, this kzero reads {FORMAT_VERSION}"
            )
        if header_length > _MAX_HEADER_BYTES or _PREAMBLE.size + header_length > len(data):
            raise PrefixFileError(CORRUPT, "truncated header")
        body_start = _PREAMBLE.size + header_length
        try:
            header = json.loads(data[_PREAMBLE.size : body_start])
            n_tokens, block_bytes, digest = (
                header["n_tokens"],
                header["block_bytes"],
                header["sha256"],
            )
            key = header["key"]
        except (ValueError, KeyError, TypeError, RecursionError) as exc:  # nested too deep
            raise PrefixFileError(CORRUPT, f"unreadable header: {exc}") from None
        if key != asdict(self.key):
            raise PrefixFileError(FOREIGN, "saved for another model, llama.cpp build or KV layout")
        if not isinstance(n_tokens, int) or not isinstance(block_bytes, int):
            raise PrefixFileError(CORRUPT, "bad lengths in the header")
        if n_tokens <= 0 or block_bytes <= 0:  # a negative block could fit a shorter body
            raise PrefixFileError(CORRUPT, "bad lengths in the header")
        body = data[body_start:]
        if len(body) != 4 * n_tokens + block_bytes:
            raise PrefixFileError(
                CORRUPT,
                f"{len(body)} bytes after the header, expected "
                f"{4 * n_tokens + block_bytes} (truncated?)",
            )
        if hashlib.sha256(body).hexdigest() != digest:
            raise PrefixFileError(CORRUPT, "checksum mismatch (damaged file)")
        tokens = list(struct.unpack_from(f"<{n_tokens}i", body))
        if path.name != self._name(tokens):
            raise PrefixFileError(CORRUPT, "token ids do not match the file name")
        return StoredPrefix(path, tokens, bytes(body[4 * n_tokens :]))

    def report(self, result: str) -> None:
        """Count what became of a file (one of ``FILE_RESULTS``)."""
        self._on_event(result)

    def touch(self, prefix: StoredPrefix) -> None:
        """Mark a restored file as used now, for least-recently-used eviction."""
        if self.writable:
            # Evicted by another pod meanwhile: nothing to mark.
            with contextlib.suppress(OSError):
                os.utime(prefix.path)

    # ---- writing (a background thread: file IO never blocks decoding) ------

    def wants(self, tokens: list[int]) -> bool:
        return self.writable and tokens_digest(tokens) not in self._known

    def save(self, tokens: list[int], block: bytes) -> None:
        """Queue a prefix for writing; returns at once."""
        if not self.wants(tokens):
            return
        self._known.add(tokens_digest(tokens))
        if self._writer is None:
            self._writer = threading.Thread(
                target=self._write_loop, name="prefix-store", daemon=True
            )
            self._writer.start()
        self._queue.put((tokens, block))

    def close(self) -> None:
        """Finish the queued writes (at drain, before the process exits)."""
        if self._writer is not None:
            self._queue.put(None)
            self._writer.join()
            self._writer = None

    def _write_loop(self) -> None:
        while (item := self._queue.get()) is not None:
            tokens, block = item
            try:
                self._write(tokens, block)
            except (OSError, CacheError) as exc:
                logger.warning(
                    "prefix cache: could not save a %d-token prefix: %s", len(tokens), exc
                )
                self._on_event(SAVE_FAILED)

    def _write(self, tokens: list[int], block: bytes) -> None:
        body = struct.pack(f"<{len(tokens)}i", *tokens) + block
        header = json.dumps(
            {
                "key": asdict(self.key),
                "n_tokens": len(tokens),
                "block_bytes": len(block),
                "sha256": hashlib.sha256(body).hexdigest(),
            },
            sort_keys=True,
        ).encode()
        content = _PREAMBLE.pack(MAGIC, FORMAT_VERSION, len(header)) + header + body
        if len(content) > self._max_bytes:
            logger.info(
                "prefix cache: a %d-token prefix (%d bytes) is over the budget",
                len(tokens),
                len(content),
            )
            return
        target = self.directory / self._name(tokens)
        with exclusive(self.directory / ".lock", timeout_s=_LOCK_TIMEOUT_S):
            if target.exists():  # another pod saved it first
                return
            # Every write holds the lock: a temporary file found now was left by
            # a writer that died mid-save.
            for stale in self.directory.glob(".*.tmp"):
                stale.unlink(missing_ok=True)
            self._evict_for(len(content))
            temporary = self.directory / f".{target.name}.{os.getpid()}.tmp"
            try:
                write_stream([content], temporary, lambda _: None)
                os.replace(temporary, target)
            finally:
                temporary.unlink(missing_ok=True)
            fsync_dir(self.directory)
        logger.info("prefix cache: saved a %d-token prefix to %s", len(tokens), target)
        self._on_event(SAVED)

    def _evict_for(self, incoming: int) -> None:
        """Delete least recently used prefix files (any model's) until ``incoming`` fits."""
        files = sorted(self.directory.glob(f"*{SUFFIX}"), key=_mtime)
        total = sum(_size(path) for path in files)
        for path in files:
            if total + incoming <= self._max_bytes:
                break
            total -= _size(path)
            path.unlink(missing_ok=True)
            logger.info("prefix cache: evicted %s (least recently used)", path.name)
            self._on_event(EVICTED)


def _ensure_writable(directory: Path) -> bool:
    """True when files can be created in ``directory`` (made if missing).

    Probed by creating one: ``os.access`` says yes to root on a read-only mount.
    """
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".probe-"):
            return True
    except OSError:
        return False  # a read-only mount: only read


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def model_digest(model_path: Path, memo_dir: Path | None) -> str:
    """The model file's sha256, remembered in ``memo_dir`` by path, size, mtime and inode.

    Hashing a large GGUF takes seconds; files in the model cache never change
    in place, so a memo whose stat still matches is trusted.
    """
    stat = model_path.stat()
    identity = f"{model_path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{stat.st_ino}"
    memo = None
    if memo_dir is not None:
        memo = memo_dir / f".digest-{hashlib.sha256(identity.encode()).hexdigest()[:32]}"
        try:
            recorded = memo.read_text().strip()
            if len(recorded) == 64:
                return recorded
        except OSError:
            pass
    digest = hash_file(model_path)
    if memo is not None:
        with contextlib.suppress(OSError):  # read-only: hash again next time
            memo.write_text(digest)
    return digest


def start_model_digest(model_path: Path, memo_dir: Path | None) -> Future[str]:
    """``model_digest`` on its own thread, so that it overlaps the model load."""
    future: Future[str] = Future()

    def run() -> None:
        try:
            future.set_result(model_digest(model_path, memo_dir))
        except BaseException as exc:  # delivered to whoever waits on the future
            future.set_exception(exc)

    threading.Thread(target=run, name="model-digest", daemon=True).start()
    return future
