import ctypes
import importlib.util
import struct
import time
from pathlib import Path

import pytest

from predictor.backends.gguf_metadata import GGML_TYPES, GGUFError, read_gguf_metadata
from predictor.default_model import default_model_path

from .gguf_builder import F32, Q4_1, gguf_header, gguf_model, gguf_string, tensor_info

VALID = {
    "general.architecture": "llama",
    "llama.context_length": 4096,
    "general.file_type": 15,
    "tokenizer.chat_template": "{{ messages }}",
    "tokenizer.ggml.tokens": ["a", "b", "c"],
}


def write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "model.gguf"
    path.write_bytes(data)
    return path


# Two tensors: a Q4_1 matrix (2 rows of 64) and an F32 vector.
TENSORS = [("blk.0.w", (64, 2), Q4_1), ("blk.0.norm", (64,), F32)]


def test_reads_the_fields_kzero_needs(tmp_path: Path):
    meta = read_gguf_metadata(write(tmp_path, gguf_model(VALID, TENSORS)))
    assert meta.version == 3
    assert meta.tensor_count == 2
    assert meta.architecture == "llama"
    assert meta.context_length == 4096
    assert meta.quantization == "Q4_K_M"
    assert meta.chat_template == "{{ messages }}"
    # Tokenizer arrays are walked but not kept in memory.
    assert meta.values["tokenizer.ggml.tokens"] is None


def test_bad_magic_is_rejected(tmp_path: Path):
    with pytest.raises(GGUFError, match="bad magic"):
        read_gguf_metadata(write(tmp_path, gguf_header(VALID, magic=b"GGML")))


def test_unknown_version_is_rejected(tmp_path: Path):
    with pytest.raises(GGUFError, match="version 99"):
        read_gguf_metadata(write(tmp_path, gguf_header(VALID, version=99)))


@pytest.mark.parametrize("cut", [3, 10, 30, 80])
def test_truncated_header_is_rejected(tmp_path: Path, cut: int):
    with pytest.raises(GGUFError):
        read_gguf_metadata(write(tmp_path, gguf_header(VALID)[:cut]))


def test_absurd_counts_fail_fast_instead_of_looping(tmp_path: Path):
    with pytest.raises(GGUFError, match="implausible"):
        read_gguf_metadata(write(tmp_path, gguf_header(VALID, tensor_count=2**60)))
    with pytest.raises(GGUFError, match="implausible"):
        read_gguf_metadata(write(tmp_path, gguf_header(VALID, kv_count=2**40)))


def test_string_longer_than_the_file_is_rejected(tmp_path: Path):
    data = bytearray(gguf_header({"general.architecture": "llama"}))
    # The key's length field sits right after the 24-byte fixed header.
    data[24:32] = (2**50).to_bytes(8, "little")
    with pytest.raises(GGUFError, match="exceeds the file size"):
        read_gguf_metadata(write(tmp_path, bytes(data)))


def test_missing_fields_have_safe_defaults(tmp_path: Path):
    meta = read_gguf_metadata(write(tmp_path, gguf_header({})))
    assert meta.architecture == "unknown"
    assert meta.context_length is None
    assert meta.chat_template is None
    assert meta.quantization == "unknown"


# --- the tensor table: every tensor must lie inside the file ----------------


def test_reads_the_tensor_table(tmp_path: Path):
    meta = read_gguf_metadata(write(tmp_path, gguf_model(VALID, TENSORS)))
    matrix, vector = meta.tensors
    assert (matrix.name, matrix.shape, matrix.ggml_type.name) == ("blk.0.w", (64, 2), "Q4_1")
    # Q4_1 stores 32 elements in 20 bytes: 128 elements -> 80 bytes.
    assert (matrix.offset, matrix.nbytes) == (0, 80)
    # The vector starts at the next 32-byte boundary after the matrix.
    assert (vector.offset, vector.nbytes) == (96, 256)
    assert meta.data_offset % 32 == 0


def test_a_file_cut_inside_the_tensor_data_is_truncated(tmp_path: Path):
    data = gguf_model(VALID, TENSORS)
    with pytest.raises(GGUFError, match=r"truncated: tensor 'blk.0.norm' ends at byte"):
        read_gguf_metadata(write(tmp_path, data[:-1]))


def test_a_file_cut_right_after_the_header_is_truncated(tmp_path: Path):
    meta = read_gguf_metadata(write(tmp_path, gguf_model(VALID, TENSORS)))
    data = gguf_model(VALID, TENSORS)[: meta.data_offset]
    with pytest.raises(GGUFError, match=r"truncated: tensor 'blk\.0\.w'"):
        read_gguf_metadata(write(tmp_path, data))


def test_a_file_cut_inside_the_tensor_table_is_truncated(tmp_path: Path):
    header = gguf_header(VALID, tensor_count=2)
    data = header + tensor_info("blk.0.w", (64, 2), Q4_1, 0)[:-3]
    with pytest.raises(GGUFError, match=r"truncated inside the GGUF header \(tensor table\)"):
        read_gguf_metadata(write(tmp_path, data))


def _one_tensor(shape: tuple[int, ...], ggml_type: int = F32, offset: int = 0) -> bytes:
    # Padded with enough zeros that only the table entry can be wrong.
    table = tensor_info("t", shape, ggml_type, offset)
    return gguf_header(VALID, tensor_count=1) + table + b"\0" * 4096


def test_unknown_ggml_type_is_rejected(tmp_path: Path):
    with pytest.raises(GGUFError, match="tensor 't' has unknown ggml type 4242"):
        read_gguf_metadata(write(tmp_path, _one_tensor((4,), ggml_type=4242)))


def test_more_than_four_dimensions_is_rejected(tmp_path: Path):
    with pytest.raises(GGUFError, match=r"tensor 't' has 5 dimensions \(at most 4\)"):
        read_gguf_metadata(write(tmp_path, _one_tensor((1, 1, 1, 1, 1))))


def test_an_absurd_dimension_count_fails_before_reading_dims(tmp_path: Path):
    data = bytearray(_one_tensor((4,)))
    n_dims_at = len(gguf_header(VALID, tensor_count=1)) + len(gguf_string("t"))
    data[n_dims_at : n_dims_at + 4] = struct.pack("<I", 2**31)
    with pytest.raises(GGUFError, match="2147483648 dimensions"):
        read_gguf_metadata(write(tmp_path, bytes(data)))


@pytest.mark.parametrize("shape", [(2**63, 1), (2**32, 2**32), (2**62, 2, 2)])
def test_a_shape_whose_element_count_overflows_is_rejected(tmp_path: Path, shape):
    with pytest.raises(GGUFError, match="absurd shape"):
        read_gguf_metadata(write(tmp_path, _one_tensor(shape)))


def test_a_huge_but_representable_shape_is_truncation(tmp_path: Path):
    # 2**40 floats fit in int64 but not in a 4 KB file.
    with pytest.raises(GGUFError, match="truncated: tensor 't'"):
        read_gguf_metadata(write(tmp_path, _one_tensor((2**40,))))


def test_an_offset_beyond_the_file_is_truncation(tmp_path: Path):
    with pytest.raises(GGUFError, match="truncated: tensor 't'"):
        read_gguf_metadata(write(tmp_path, _one_tensor((4,), offset=2**40)))


def test_a_misaligned_offset_is_rejected(tmp_path: Path):
    with pytest.raises(GGUFError, match="offset 8 is not aligned to 32 bytes"):
        read_gguf_metadata(write(tmp_path, _one_tensor((4,), offset=8)))


def test_a_row_that_is_not_whole_blocks_is_rejected(tmp_path: Path):
    with pytest.raises(GGUFError, match="row length 33 is not a multiple of Q4_1's block size 32"):
        read_gguf_metadata(write(tmp_path, _one_tensor((33, 2), ggml_type=Q4_1)))


def test_duplicate_tensor_names_are_rejected(tmp_path: Path):
    data = gguf_model(VALID, [("w", (4,), F32), ("w", (4,), F32)])
    with pytest.raises(GGUFError, match="'w' appears twice"):
        read_gguf_metadata(write(tmp_path, data))


def test_tensors_sharing_bytes_are_rejected(tmp_path: Path):
    table = tensor_info("a", (16,), F32, 0) + tensor_info("b", (8,), F32, 32)
    data = gguf_header(VALID, tensor_count=2) + table + b"\0" * 4096
    with pytest.raises(GGUFError, match="tensors 'a' and 'b' overlap"):
        read_gguf_metadata(write(tmp_path, data))


def test_tensors_back_to_back_are_accepted(tmp_path: Path):
    table = tensor_info("a", (8,), F32, 0) + tensor_info("b", (8,), F32, 32)
    data = gguf_header(VALID, tensor_count=2) + table + b"\0" * 4096
    assert [t.name for t in read_gguf_metadata(write(tmp_path, data)).tensors] == ["a", "b"]


def test_an_overlong_tensor_name_is_rejected(tmp_path: Path):
    data = gguf_model(VALID, [("x" * 64, (4,), F32)])
    with pytest.raises(GGUFError, match="longer than 63 bytes"):
        read_gguf_metadata(write(tmp_path, data))


def test_a_custom_alignment_moves_the_data_section(tmp_path: Path):
    meta = read_gguf_metadata(write(tmp_path, gguf_model(VALID, TENSORS, alignment=256)))
    assert meta.data_offset % 256 == 0
    assert meta.tensors[1].offset == 256


@pytest.mark.parametrize("alignment", [0, 48])
def test_an_alignment_that_is_not_a_power_of_two_is_rejected(tmp_path: Path, alignment: int):
    values = {**VALID, "general.alignment": alignment}
    with pytest.raises(GGUFError, match=f"general.alignment {alignment} is not a power of two"):
        read_gguf_metadata(write(tmp_path, gguf_header(values)))


def test_more_tensors_than_the_file_holds_is_truncation(tmp_path: Path):
    # A plausible count in a file cut short: say truncated, not "implausible".
    with pytest.raises(GGUFError, match=r"truncated inside the GGUF header \(tensor table\)"):
        read_gguf_metadata(write(tmp_path, gguf_header(VALID, tensor_count=1000)))


def test_an_empty_file_is_rejected(tmp_path: Path):
    with pytest.raises(GGUFError, match="is empty"):
        read_gguf_metadata(write(tmp_path, b""))


def test_the_type_table_knows_the_common_quantizations():
    names = {t.name for t in GGML_TYPES.values()}
    assert {"F32", "F16", "BF16", "Q4_0", "Q4_1", "Q8_0", "Q4_K", "Q5_K", "Q6_K"} <= names
    # Spot checks against ggml-common.h's static asserts.
    by_name = {t.name: (t.block_size, t.block_bytes) for t in GGML_TYPES.values()}
    assert by_name["Q4_K"] == (256, 144)
    assert by_name["Q6_K"] == (256, 210)
    assert by_name["Q8_0"] == (32, 34)
    assert by_name["IQ4_XS"] == (256, 136)


# --- the bundled model -------------------------------------------------------


def test_the_bundled_model_validates_in_milliseconds():
    path = default_model_path()
    read_gguf_metadata(path)  # warm the page cache, as a pod's second start would
    started = time.perf_counter()
    meta = read_gguf_metadata(path)
    elapsed = time.perf_counter() - started
    assert meta.quantization == "Q4_1"
    assert meta.tensor_count == len(meta.tensors) > 0
    # The last tensor ends within the file's final alignment padding.
    end = max(meta.data_offset + t.offset + t.nbytes for t in meta.tensors)
    assert path.stat().st_size - 32 < end <= path.stat().st_size
    # Generous for a shared CI machine; typically ~20 ms.
    assert elapsed < 0.5, f"reading the header took {elapsed:.3f} s"


def test_a_duplicate_metadata_key_is_rejected(tmp_path: Path):
    data = bytearray(gguf_header({"general.name": "a", "general.namf": "b"}))
    # Rename the second key so both read "general.name"; same length, nothing moves.
    at = data.rindex(b"general.namf")
    data[at : at + 12] = b"general.name"
    with pytest.raises(GGUFError, match=r"'general\.name' appears twice"):
        read_gguf_metadata(write(tmp_path, bytes(data)))


def test_the_type_table_matches_the_ggml_that_loads_the_model():
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python is not installed")
    from llama_cpp import llama_cpp

    ggml = ctypes.CDLL(str(Path(llama_cpp.__file__).parent / "lib" / "libggml-base.so"))
    ggml.ggml_type_name.restype = ctypes.c_char_p
    ggml.ggml_type_name.argtypes = [ctypes.c_int]
    ggml.ggml_blck_size.restype = ctypes.c_int64
    ggml.ggml_blck_size.argtypes = [ctypes.c_int]
    ggml.ggml_type_size.restype = ctypes.c_size_t
    ggml.ggml_type_size.argtypes = [ctypes.c_int]
    known = {}
    # ggml indexes its own table with the id: stay below the count it declares.
    for type_id in range(llama_cpp.GGML_TYPE_COUNT):
        block_size = ggml.ggml_blck_size(type_id)
        if block_size > 0:  # removed types keep their id with block size 0
            name = ggml.ggml_type_name(type_id).decode().upper()
            known[type_id] = (name, block_size, ggml.ggml_type_size(type_id))
    ours = {i: (t.name, t.block_size, t.block_bytes) for i, t in GGML_TYPES.items()}
    # A llama-cpp-python upgrade that adds a type fails here: add it to GGML_TYPES.
    assert ours == known
