"""Builds small GGUF files for tests: valid ones and deliberately broken ones."""

from __future__ import annotations

import struct
from typing import Any

STRING, ARRAY, UINT32, UINT64 = 8, 9, 4, 10
F32, Q4_1 = 0, 3
# (block size, bytes per block) of the types tests use.
_LAYOUT = {F32: (1, 4), Q4_1: (32, 20)}


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
    """A GGUF header holding ``values`` (str, int or list[str]), without a tensor table."""
    body = b""
    for key, value in values.items():
        body += gguf_string(key)
        if isinstance(value, str):
            body += struct.pack("<I", STRING) + gguf_string(value)
        elif isinstance(value, list):
            body += struct.pack("<IIQ", ARRAY, STRING, len(value))
            body += b"".join(gguf_string(item) for item in value)
        elif key == "general.alignment":
            body += struct.pack("<II", UINT32, value)  # the spec's type for it
        else:
            body += struct.pack("<IQ", UINT64, value)
    count = len(values) if kv_count is None else kv_count
    return magic + struct.pack("<IQQ", version, tensor_count, count) + body


def tensor_info(name: str, shape: tuple[int, ...], ggml_type: int, offset: int) -> bytes:
    """One tensor-table entry, exactly as written in a GGUF file."""
    dims = struct.pack(f"<{len(shape)}Q", *shape)
    return (
        gguf_string(name)
        + struct.pack("<I", len(shape))
        + dims
        + struct.pack("<IQ", ggml_type, offset)
    )


def tensor_nbytes(shape: tuple[int, ...], ggml_type: int) -> int:
    block_size, block_bytes = _LAYOUT[ggml_type]
    elements = 1
    for dim in shape:
        elements *= dim
    return elements // block_size * block_bytes


def gguf_model(
    values: dict[str, Any],
    tensors: list[tuple[str, tuple[int, ...], int]],
    *,
    alignment: int = 32,
) -> bytes:
    """A complete GGUF file: header, tensor table, padding and (zero) tensor data.

    Tensors are laid out back to back, each padded to ``alignment``, as
    llama.cpp's writer does.
    """
    table = b""
    offset = 0
    for name, shape, ggml_type in tensors:
        table += tensor_info(name, shape, ggml_type, offset)
        nbytes = tensor_nbytes(shape, ggml_type)
        offset += -(-nbytes // alignment) * alignment
    if alignment != 32:
        values = {**values, "general.alignment": alignment}
    head = gguf_header(values, tensor_count=len(tensors)) + table
    padding = -len(head) % alignment
    return head + b"\0" * padding + b"\0" * offset
