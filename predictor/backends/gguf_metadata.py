"""Read a GGUF file's header, key/value metadata and tensor table, defensively.

We read the header ourselves, before llama.cpp sees the file, for two reasons:
the context length, chat template and quantization decide how the engine is
built; and a model file is untrusted input, so a wrong magic, a truncated file
or an absurd count must become one clear error instead of a crash or a hang.

Tensor data is never read: the header and the tensor-info table say where every
tensor lies and how many bytes it needs, which is enough to catch a file cut
short by a failed download before llama.cpp maps it. The file is memory-mapped,
so only the pages of the header are touched (about 5 MB for a 256k vocabulary).
"""

from __future__ import annotations

import itertools
import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
# Far above any real model (Llama 3 405B has ~1,100 tensors, tokenizers ~260k
# entries) but low enough that a corrupt count fails fast instead of looping.
MAX_TENSORS = 1_000_000
MAX_KV_PAIRS = 100_000
MAX_ARRAY_LENGTH = 10_000_000
# ggml's limits (GGML_MAX_DIMS, GGML_MAX_NAME): llama.cpp rejects more.
MAX_DIMS = 4
MAX_TENSOR_NAME_BYTES = 63
DEFAULT_ALIGNMENT = 32
# ggml counts elements and bytes in int64.
_INT64_MAX = 2**63 - 1

# llama_ftype values (llama.h) -> the quantization names users know.
FILE_TYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1",
    10: "Q2_K", 11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M",
    16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S",
    22: "IQ3_XS", 23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M",
    28: "IQ2_S", 29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0",
    37: "TQ2_0", 38: "MXFP4",
}  # fmt: skip


@dataclass(frozen=True)
class GGMLType:
    """How a ggml tensor type is stored: ``block_bytes`` per ``block_size`` elements."""

    name: str
    block_size: int
    block_bytes: int


# ggml_type ids (ggml.h) -> storage layout, from the block structs in
# ggml-common.h (QK_K = 256), as of the llama.cpp that llama-cpp-python 0.3.36
# vendors. Ids 4, 5, 31-33 and 36-38 were removed from ggml. A type missing here
# is refused by name, which is safer than guessing its size.
GGML_TYPES = {
    0: GGMLType("F32", 1, 4),
    1: GGMLType("F16", 1, 2),
    2: GGMLType("Q4_0", 32, 2 + 16),
    3: GGMLType("Q4_1", 32, 2 + 2 + 16),
    6: GGMLType("Q5_0", 32, 2 + 4 + 16),
    7: GGMLType("Q5_1", 32, 2 + 2 + 4 + 16),
    8: GGMLType("Q8_0", 32, 2 + 32),
    9: GGMLType("Q8_1", 32, 4 + 32),
    10: GGMLType("Q2_K", 256, 2 + 2 + 256 // 16 + 256 // 4),
    11: GGMLType("Q3_K", 256, 2 + 256 // 4 + 256 // 8 + 12),
    12: GGMLType("Q4_K", 256, 2 + 2 + 256 // 2 + 12),
    13: GGMLType("Q5_K", 256, 2 + 2 + 256 // 2 + 256 // 8 + 12),
    14: GGMLType("Q6_K", 256, 2 + 256 // 2 + 256 // 4 + 256 // 16),
    15: GGMLType("Q8_K", 256, 4 + 256 + 256 // 8),
    16: GGMLType("IQ2_XXS", 256, 2 + 256 // 4),
    17: GGMLType("IQ2_XS", 256, 2 + 256 // 4 + 256 // 32),
    18: GGMLType("IQ3_XXS", 256, 2 + 256 // 4 + 256 // 8),
    19: GGMLType("IQ1_S", 256, 2 + 256 // 8 + 256 // 16),
    20: GGMLType("IQ4_NL", 32, 2 + 16),
    21: GGMLType("IQ3_S", 256, 2 + 256 // 4 + 256 // 8 + 256 // 32 + 4),
    22: GGMLType("IQ2_S", 256, 2 + 256 // 4 + 256 // 16),
    23: GGMLType("IQ4_XS", 256, 2 + 2 + 256 // 2 + 256 // 64),
    24: GGMLType("I8", 1, 1),
    25: GGMLType("I16", 1, 2),
    26: GGMLType("I32", 1, 4),
    27: GGMLType("I64", 1, 8),
    28: GGMLType("F64", 1, 8),
    29: GGMLType("IQ1_M", 256, 256 // 8 + 256 // 16 + 256 // 32),
    30: GGMLType("BF16", 1, 2),
    34: GGMLType("TQ1_0", 256, 2 + 4 * 13),
    35: GGMLType("TQ2_0", 256, 2 + 64),
    39: GGMLType("MXFP4", 32, 1 + 16),
    40: GGMLType("NVFP4", 64, 4 + 32),
    41: GGMLType("Q1_0", 128, 2 + 16),
    42: GGMLType("Q2_0", 64, 2 + 16),
}

# GGUF value types: id -> struct format for the scalar ones.
_SCALAR_FORMATS = {
    0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d",
}  # fmt: skip
_STRING = 8
_ARRAY = 9


class GGUFError(ValueError):
    """The file is not a readable GGUF model."""


@dataclass(frozen=True)
class TensorInfo:
    """One entry of the tensor table; ``offset`` is relative to the data section."""

    name: str
    shape: tuple[int, ...]
    ggml_type: GGMLType
    offset: int
    nbytes: int


@dataclass(frozen=True)
class GGUFMetadata:
    """The header fields kzero needs; ``values`` holds every scalar and short array."""

    version: int
    tensor_count: int
    values: dict[str, Any]
    tensors: tuple[TensorInfo, ...] = ()
    # Absolute file offset where tensor data starts (after alignment padding).
    data_offset: int = 0

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
    def kv_bytes_per_token(self) -> int | None:
        """KV-cache bytes one token takes at f16 (llama.cpp's default), if the header says."""
        arch = self.architecture
        layers = self.values.get(f"{arch}.block_count")
        heads = self.values.get(f"{arch}.attention.head_count")
        kv_heads = self.values.get(f"{arch}.attention.head_count_kv", heads)
        width = self.values.get(f"{arch}.embedding_length")
        if not all(isinstance(v, int) and v > 0 for v in (layers, heads, kv_heads, width)):
            return None
        key_length = self.values.get(f"{arch}.attention.key_length", width // heads)
        value_length = self.values.get(f"{arch}.attention.value_length", width // heads)
        return int(layers * kv_heads * (key_length + value_length) * 2)

    @property
    def quantization(self) -> str:
        file_type = self.values.get("general.file_type")
        if file_type is None:
            return "unknown"
        return FILE_TYPES.get(int(file_type), f"ftype-{file_type}")


class _Reader:
    """Bounds-checked little-endian reads from a buffer (the memory-mapped file)."""

    def __init__(self, buffer: Any, size: int) -> None:
        self._buffer = buffer
        self._size = size
        self.pos = 0

    def _need(self, count: int, what: str) -> None:
        if count > self._size - self.pos:
            raise GGUFError(f"file is truncated inside the GGUF header ({what})")

    def read(self, count: int, what: str = "header") -> bytes:
        self._need(count, what)
        data = bytes(self._buffer[self.pos : self.pos + count])
        self.pos += count
        return data

    def scalar(self, fmt: str, what: str = "header") -> Any:
        width = struct.calcsize(fmt)
        self._need(width, what)
        (value,) = struct.unpack_from(fmt, self._buffer, self.pos)
        self.pos += width
        return value

    def string(self, what: str = "string") -> str:
        length = self.scalar("<Q", what)
        if length > self._size:
            raise GGUFError(f"string length {length} exceeds the file size")
        return self.read(length, what).decode("utf-8", errors="replace")

    def skip_strings(self, count: int) -> None:
        # The tokenizer's vocabulary and merges are ~100k strings: skip them
        # without decoding, the hot loop of reading a header.
        buffer, size, pos, unpack = self._buffer, self._size, self.pos, struct.unpack_from
        for _ in range(count):
            if pos + 8 > size:
                raise GGUFError("file is truncated inside the GGUF header (string array)")
            pos += 8 + unpack("<Q", buffer, pos)[0]
        if pos > size:
            raise GGUFError("file is truncated inside the GGUF header (string array)")
        self.pos = pos

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
            if not keep_arrays and item_type in _SCALAR_FORMATS:
                # Fixed-size items (token scores, types): one bounds check, no loop.
                self._need(length * struct.calcsize(_SCALAR_FORMATS[item_type]), "array")
                self.pos += length * struct.calcsize(_SCALAR_FORMATS[item_type])
                return None
            if not keep_arrays and item_type == _STRING:
                self.skip_strings(length)
                return None
            items = [self.value(item_type, keep_arrays) for _ in range(length)]
            return items if keep_arrays else None
        raise GGUFError(f"unknown GGUF value type {value_type}")


def _alignment(values: dict[str, Any]) -> int:
    alignment = values.get("general.alignment", DEFAULT_ALIGNMENT)
    # ggml asserts on anything else; bool is an int subclass but not an alignment.
    if isinstance(alignment, bool) or not isinstance(alignment, int):
        raise GGUFError(f"general.alignment {alignment!r} is not a power of two")
    if alignment <= 0 or alignment & (alignment - 1):
        raise GGUFError(f"general.alignment {alignment} is not a power of two")
    return alignment


def _tensor_info(reader: _Reader, alignment: int) -> TensorInfo:
    name = reader.string("tensor table")
    if len(name.encode()) > MAX_TENSOR_NAME_BYTES:
        raise GGUFError(
            f"tensor name {name[:80]!r}... is longer than {MAX_TENSOR_NAME_BYTES} bytes"
        )
    n_dims = reader.scalar("<I", "tensor table")
    if n_dims > MAX_DIMS:
        raise GGUFError(f"tensor {name!r} has {n_dims} dimensions (at most {MAX_DIMS})")
    shape = tuple(reader.scalar("<Q", "tensor table") for _ in range(n_dims))
    elements = 1
    for dim in shape:
        elements *= dim
        # Checked at every step so a huge shape fails before the product grows further.
        if dim > _INT64_MAX or elements > _INT64_MAX:
            raise GGUFError(f"tensor {name!r} has an absurd shape {list(shape)}")
    type_id = reader.scalar("<I", "tensor table")
    ggml_type = GGML_TYPES.get(type_id)
    if ggml_type is None:
        raise GGUFError(f"tensor {name!r} has unknown ggml type {type_id}")
    if shape and shape[0] % ggml_type.block_size:
        raise GGUFError(
            f"tensor {name!r}: row length {shape[0]} is not a multiple of "
            f"{ggml_type.name}'s block size {ggml_type.block_size}"
        )
    offset = reader.scalar("<Q", "tensor table")
    if offset % alignment:
        raise GGUFError(f"tensor {name!r} offset {offset} is not aligned to {alignment} bytes")
    nbytes = elements // ggml_type.block_size * ggml_type.block_bytes
    return TensorInfo(name, shape, ggml_type, offset, nbytes)


def _refuse_overlaps(tensors: list[TensorInfo]) -> None:
    """Every tensor owns its bytes: llama.cpp's writer lays them out back to back,
    and two tensors sharing bytes can only be a corrupt or crafted file."""
    by_offset = sorted(tensors, key=lambda info: info.offset)
    for first, second in itertools.pairwise(by_offset):
        if first.offset + first.nbytes > second.offset:
            raise GGUFError(
                f"tensors {first.name!r} and {second.name!r} overlap in the data section "
                f"(offsets {first.offset:,} and {second.offset:,})"
            )


def read_gguf_metadata(path: str | Path) -> GGUFMetadata:
    """Parse and check the header of ``path``; raise ``GGUFError`` with the reason if invalid.

    Large arrays (the tokenizer's vocabulary, merges) are walked but not kept.
    Every tensor must lie inside the file: a truncated download fails here.
    """
    path = Path(path)
    with path.open("rb") as stream:
        size = path.stat().st_size
        if size == 0:
            raise GGUFError(f"{path.name} is empty")
        with mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ) as buffer:
            return _parse(buffer, size)


def _parse(buffer: Any, size: int) -> GGUFMetadata:
    reader = _Reader(buffer, size)
    magic = bytes(buffer[: len(GGUF_MAGIC)])
    if magic != GGUF_MAGIC:
        raise GGUFError(f"not a GGUF file (bad magic {magic!r})")
    reader.pos = len(GGUF_MAGIC)
    version = reader.scalar("<I")
    if version not in SUPPORTED_VERSIONS:
        raise GGUFError(f"unsupported GGUF version {version}")
    tensor_count = reader.scalar("<Q")
    kv_count = reader.scalar("<Q")
    # Each entry read below consumes bytes, so the loops also end at the end of
    # the file; these bounds only make an absurd count fail before any work.
    if tensor_count > MAX_TENSORS or kv_count > MAX_KV_PAIRS:
        raise GGUFError(f"implausible header: {tensor_count} tensors, {kv_count} metadata keys")
    values: dict[str, Any] = {}
    for _ in range(kv_count):
        key = reader.string()
        if key in values:
            raise GGUFError(f"metadata key {key[:80]!r} appears twice")
        value_type = reader.scalar("<I")
        keep = not key.startswith("tokenizer.ggml.")
        values[key] = reader.value(value_type, keep_arrays=keep)

    alignment = _alignment(values)
    tensors = []
    names: set[str] = set()
    for _ in range(tensor_count):
        info = _tensor_info(reader, alignment)
        if info.name in names:
            raise GGUFError(f"tensor {info.name!r} appears twice in the tensor table")
        names.add(info.name)
        tensors.append(info)

    # The data section starts at the next multiple of the alignment.
    data_offset = -(-reader.pos // alignment) * alignment
    for info in tensors:
        end = data_offset + info.offset + info.nbytes
        if end > size:
            raise GGUFError(
                f"file is truncated: tensor {info.name!r} ends at byte {end:,} "
                f"but the file has {size:,} bytes"
            )
    _refuse_overlaps(tensors)
    return GGUFMetadata(
        version=version,
        tensor_count=tensor_count,
        values=values,
        tensors=tuple(tensors),
        data_offset=data_offset,
    )
