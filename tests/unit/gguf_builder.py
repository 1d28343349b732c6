"""Builds small GGUF headers for tests: valid ones and deliberately broken ones."""

from __future__ import annotations

import struct
from typing import Any

STRING, ARRAY, UINT32, UINT64 = 8, 9, 4, 10


def gguf_string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("<Q", len(data)) + data


def gguf_header(
    values: dict[str, Any],
    *,
    magic: bytes = b"GGUF",
    version: int = 3,
    tensor_count: int = 0,
    kv_count: int | None = None,
) -> bytes:
    """A GGUF header holding ``values`` (str, int or list[str])."""
    body = b""
    for key, value in values.items():
        body += gguf_string(key)
        if isinstance(value, str):
            body += struct.pack("<I", STRING) + gguf_string(value)
        elif isinstance(value, list):
            body += struct.pack("<IIQ", ARRAY, STRING, len(value))
            body += b"".join(gguf_string(item) for item in value)
        else:
            body += struct.pack("<IQ", UINT64, value)
    count = len(values) if kv_count is None else kv_count
    return magic + struct.pack("<IQQ", version, tensor_count, count) + body
