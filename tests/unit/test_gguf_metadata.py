from pathlib import Path

import pytest

from predictor.backends.gguf_metadata import GGUFError, read_gguf_metadata

from .gguf_builder import gguf_header

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


def test_reads_the_fields_kzero_needs(tmp_path: Path):
    meta = read_gguf_metadata(write(tmp_path, gguf_header(VALID, tensor_count=12)))
    assert meta.version == 3
    assert meta.tensor_count == 12
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
