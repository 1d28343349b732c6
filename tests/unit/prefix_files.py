"""Prefix cache files taken apart and damaged on purpose, and a read-only view of a directory.

Shared by the prefix store's unit tests and the persistence integration tests.
The layout is ``predictor/backends/prefix_store.py``'s: a preamble (magic,
format version, header length), a JSON header, then the body: the token ids
(int32 little-endian) and llama.cpp's stream block.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

PREAMBLE = struct.Struct("<8sII")
U32 = struct.Struct("<I")


@dataclass(frozen=True)
class PrefixFile:
    """One prefix file's bytes and where its parts start."""

    data: bytes

    @property
    def version(self) -> int:
        return int(PREAMBLE.unpack_from(self.data)[1])

    @property
    def header_start(self) -> int:
        return PREAMBLE.size

    @property
    def body_start(self) -> int:
        return PREAMBLE.size + int(PREAMBLE.unpack_from(self.data)[2])

    @property
    def header(self) -> dict[str, Any]:
        return dict(json.loads(self.data[self.header_start : self.body_start]))

    @property
    def block_start(self) -> int:
        return self.body_start + 4 * int(self.header["n_tokens"])

    @property
    def tokens(self) -> list[int]:
        count = int(self.header["n_tokens"])
        return list(struct.unpack_from(f"<{count}i", self.data, self.body_start))

    @property
    def block(self) -> bytes:
        return self.data[self.block_start :]

    def flipped(self, offset: int, mask: int = 0xFF) -> bytes:
        """The file with the bits ``mask`` of the byte at ``offset`` inverted."""
        data = bytearray(self.data)
        data[offset] ^= mask
        return bytes(data)

    def with_version(self, version: int) -> bytes:
        magic, _, length = PREAMBLE.unpack_from(self.data)
        return PREAMBLE.pack(magic, version, length) + self.data[PREAMBLE.size :]

    def with_header(self, header: dict[str, Any]) -> bytes:
        """The same body under another header (its length recomputed)."""
        magic, version, _ = PREAMBLE.unpack_from(self.data)
        text = json.dumps(header, sort_keys=True).encode()
        return PREAMBLE.pack(magic, version, len(text)) + text + self.data[self.body_start :]

    def with_key(self, **changes: Any) -> bytes:
        """The header's key with ``changes``: a file another model or build wrote."""
        header = self.header
        header["key"] = {**header["key"], **changes}
        return self.with_header(header)

    def with_block(self, block: bytes) -> bytes:
        """Another block, with the lengths and the checksum made to match it:
        a file that passes every check of the store's own."""
        body = self.data[self.body_start : self.block_start] + block
        header = self.header | {
            "block_bytes": len(block),
            "sha256": hashlib.sha256(body).hexdigest(),
        }
        magic, version, _ = PREAMBLE.unpack_from(self.data)
        text = json.dumps(header, sort_keys=True).encode()
        return PREAMBLE.pack(magic, version, len(text)) + text + body


def llama_layer_count_offset(block: bytes) -> int:
    """Where llama.cpp's layer count sits in a split-KV sequence's stream block.

    At the pinned llama.cpp (``llama_kv_cache::state_write``): uint32 cell
    count, then per cell int32 pos, uint32 n_seq_id (1 for one sequence's
    state) and that int32 seq id; then ``state_write_data``'s uint32 v_trans
    and uint32 n_layer.
    """
    (cells,) = U32.unpack_from(block)
    meta = U32.size + cells * 12
    for cell in range(cells):  # check the layout is the one described before trusting it
        pos, n_seq_id, _ = struct.unpack_from("<iIi", block, U32.size + 12 * cell)
        assert (pos, n_seq_id) == (cell, 1), f"unexpected KV cell metadata at cell {cell}"
    (v_trans,) = U32.unpack_from(block, meta)
    assert v_trans in (0, 1), f"unexpected v_trans {v_trans}"
    return meta + U32.size


@contextmanager
def read_only_view(source: Path, target: Path) -> Iterator[Path]:
    """``source`` bind-mounted read-only at ``target``, as a pod sees a read-only volume.

    Root ignores permission bits, so only a read-only mount stops its writes.
    Skips, saying why, when this process may not mount or the kernel refuses.
    """
    if os.geteuid() != 0:
        pytest.skip("a read-only bind mount needs root (CAP_SYS_ADMIN); this run is not root")
    target.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run(
            ["mount", "--bind", str(source), str(target)], check=True, capture_output=True
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"the kernel refused a bind mount: {_why(exc)}")
    try:
        try:
            subprocess.run(
                ["mount", "-o", "remount,bind,ro", str(target)], check=True, capture_output=True
            )
        except subprocess.CalledProcessError as exc:
            pytest.skip(f"the kernel refused a read-only remount: {_why(exc)}")
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=True)


def _why(exc: BaseException) -> str:
    stderr = getattr(exc, "stderr", None)
    return stderr.decode(errors="replace").strip() if stderr else str(exc)
