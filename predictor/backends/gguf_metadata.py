"""Read a GGUF file's header and key/value metadata, defensively.

We read the header ourselves, before llama.cpp sees the file, for two reasons:
the context length, chat template and quantization decide how the engine is
built; and a model file is untrusted input, so a wrong magic, a truncated file
or an absurd count must become one clear error instead of a crash or a hang.
Tensor data is never read here: only the metadata block at the start.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
# Far above any real model (Llama 3 405B has ~1,100 tensors, tokenizers ~260k
# entries) but low enough that a corrupt count fails fast instead of looping.
MAX_TENSORS = 1_000_000
MAX_KV_PAIRS = 100_000
MAX_ARRAY_LENGTH = 10_000_000

# llama_ftype values (llama.h) -> the quantization names users know.
FILE_TYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1",
    10: "Q2_K", 11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M",
    16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S",
    22: "IQ3_XS", 23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M",
    28: "IQ2_S", 29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0",
    37: "TQ2_0", 38: "MXFP4",
}  # fmt: skip

# GGUF value types: id -> struct format for the scalar ones.
_SCALAR_FORMATS = {
    0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d",
}  # fmt: skip
_STRING = 8
_ARRAY = 9


class GGUFError(ValueError):
    """The file is not a readable GGUF model."""


@dataclass(frozen=True)
class GGUFMetadata:
    """The header fields kzero needs; ``values`` holds every scalar and short array."""

    version: int
    tensor_count: int
    values: dict[str, Any]

    @property
    def architecture(self) -> str:
        return str(self.values.get("general.architecture", "unknown"))

    @property
    def context_length(self) -> int | None:
        value = self.values.get(f"{self.architecture}.context_length")
        return int(value) if value is not None else None

    @property
    def chat_template(self) -> str | None:
        value = self.values.get("tokenizer.chat_template")
        return str(value) if value is not None else None

    @property
    def quantization(self) -> str:
        file_type = self.values.get("general.file_type")
        if file_type is None:
            return "unknown"
        return FILE_TYPES.get(int(file_type), f"ftype-{file_type}")


class _Reader:
    def __init__(self, stream: BinaryIO, size: int) -> None:
        self._stream = stream
        self._size = size

    def read(self, count: int) -> bytes:
        data = self._stream.read(count)
        if len(data) != count:
            raise GGUFError("file is truncated inside the GGUF header")
        return data

    def scalar(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.read(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        length = self.scalar("<Q")
        if length > self._size:
            raise GGUFError(f"string length {length} exceeds the file size")
        return self.read(length).decode("utf-8", errors="replace")

    def value(self, value_type: int, keep_arrays: bool) -> Any:
        if value_type in _SCALAR_FORMATS:
            return self.scalar(_SCALAR_FORMATS[value_type])
        if value_type == _STRING:
            return self.string()
        if value_type == _ARRAY:
            item_type = self.scalar("<I")
            length = self.scalar("<Q")
            if length > MAX_ARRAY_LENGTH:
                raise GGUFError(f"array length {length} is implausible")
            items = [self.value(item_type, keep_arrays) for _ in range(length)]
            return items if keep_arrays else None
        raise GGUFError(f"unknown GGUF value type {value_type}")


def read_gguf_metadata(path: str | Path) -> GGUFMetadata:
    """Parse the header of ``path``; raise ``GGUFError`` with the reason if it is not valid GGUF.

    Large arrays (the tokenizer's vocabulary, merges) are walked but not kept.
    """
    path = Path(path)
    size = path.stat().st_size
    with path.open("rb") as stream:
        reader = _Reader(stream, size)
        if reader.read(4) != GGUF_MAGIC:
            raise GGUFError(f"{path.name} is not a GGUF file (bad magic)")
        version = reader.scalar("<I")
        if version not in SUPPORTED_VERSIONS:
            raise GGUFError(f"unsupported GGUF version {version}")
        tensor_count = reader.scalar("<Q")
        kv_count = reader.scalar("<Q")
        if tensor_count > MAX_TENSORS or kv_count > MAX_KV_PAIRS:
            raise GGUFError(f"implausible header: {tensor_count} tensors, {kv_count} metadata keys")
        values: dict[str, Any] = {}
        for _ in range(kv_count):
            key = reader.string()
            value_type = reader.scalar("<I")
            keep = not key.startswith("tokenizer.ggml.")
            values[key] = reader.value(value_type, keep_arrays=keep)
    return GGUFMetadata(version=version, tensor_count=tensor_count, values=values)
