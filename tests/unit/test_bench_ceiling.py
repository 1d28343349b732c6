"""The physical ceiling's arithmetic: bandwidth convention, bytes per step, shares."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.ceiling import (
    MIN_ARRAY_MIB,
    ceiling_rows,
    copy_rate,
    last_level_cache_bytes,
    measure_copy_bandwidth,
    model_step_bytes,
    parse_cache_size,
    single_stream_ceiling,
    stream_array_mib,
)

from .gguf_builder import F32, Q4_1, gguf_model, tensor_nbytes

LLAMA = {
    "general.architecture": "llama",
    "llama.block_count": 2,
    "llama.attention.head_count": 4,
    "llama.attention.head_count_kv": 2,
    "llama.embedding_length": 64,
}
EMBEDDING = ("token_embd.weight", (64, 320), Q4_1)
LAYER = [("blk.0.attn_q.weight", (64, 64), Q4_1), ("blk.0.attn_norm.weight", (64,), F32)]


def write_model(path: Path, tensors: list[tuple[str, tuple[int, ...], int]]) -> Path:
    path.write_bytes(gguf_model(LLAMA, tensors))
    return path


def test_copy_moves_every_byte_twice():
    # 1 GB copied in 0.1 s: 1 GB read + 1 GB written = 20 GB/s.
    assert copy_rate(10**9, 0.1) == pytest.approx(20e9)


def test_tied_embeddings_count_in_full(tmp_path: Path):
    step = model_step_bytes(write_model(tmp_path / "tied.gguf", [EMBEDDING, *LAYER]))
    every = sum(tensor_nbytes(shape, kind) for _, shape, kind in [EMBEDDING, *LAYER])
    assert step.weights == step.tensor_data == every
    assert step.token_embedding_counted
    # 2 layers x 2 KV heads x (16 + 16) x 2 bytes (f16).
    assert step.kv_per_token == 2 * 2 * (16 + 16) * 2


def test_untied_embeddings_are_read_a_row_at_a_time_so_not_counted(tmp_path: Path):
    output = ("output.weight", (64, 320), Q4_1)
    step = model_step_bytes(write_model(tmp_path / "untied.gguf", [EMBEDDING, *LAYER, output]))
    embedding = tensor_nbytes(EMBEDDING[1], EMBEDDING[2])
    assert step.weights == step.tensor_data - embedding
    assert not step.token_embedding_counted


def test_batched_step_yields_one_token_per_sequence():
    rows = ceiling_rows(
        {("b", 1): 60.0, ("b", 8): 160.0, ("d", 8): 200.0},
        batching_setups=("b", "d"),
        bytes_per_step=100_000_000,
        bandwidth=20e9,
    )
    by_key = {(row.setup, row.concurrency): row for row in rows}
    assert by_key[("b", 1)].steps_per_s == 60.0
    # 60 steps/s x 100 MB = 6 GB/s of 20 GB/s.
    assert by_key[("b", 1)].fraction_of_bandwidth == pytest.approx(0.30)
    assert by_key[("b", 8)].tokens_per_step == 8
    assert by_key[("b", 8)].steps_per_s == pytest.approx(20.0)
    assert by_key[("b", 8)].fraction_of_bandwidth == pytest.approx(0.10)
    assert by_key[("d", 8)].fraction_of_bandwidth == pytest.approx(0.125)


def test_a_setup_that_serves_one_request_at_a_time_makes_one_token_per_step():
    (row,) = ceiling_rows({("a", 4): 70.0}, ("b", "d"), 100_000_000, 20e9)
    assert row.tokens_per_step == 1
    assert row.steps_per_s == 70.0
    assert row.fraction_of_bandwidth == pytest.approx(0.35)


def test_single_stream_ceiling_is_bandwidth_over_bytes_per_step():
    assert single_stream_ceiling(100_000_000, 20e9) == pytest.approx(200.0)


@pytest.mark.parametrize("threads", [1, 2])
def test_bandwidth_measurement_reports_every_repeat(threads: int):
    result = measure_copy_bandwidth(threads, array_mib=1, repeats=3, label="before")
    assert result.label == "before"
    assert result.threads == threads
    assert result.array_bytes == 2**20
    assert len(result.samples) == 3
    assert all(rate > 0 for rate in result.samples)
    assert result.best == max(result.samples)
    assert min(result.samples) <= result.median <= result.best


def test_share_of_the_weight_sized_copy_is_reported_next_to_dram():
    (row,) = ceiling_rows({("d", 1): 50.0}, ("b", "d"), 100_000_000, 20e9, cached_bandwidth=50e9)
    assert row.fraction_of_bandwidth == pytest.approx(0.25)
    assert row.fraction_of_cached_bandwidth == pytest.approx(0.10)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("48K", 48 * 2**10), ("307200K\n", 300 * 2**20), ("32M", 32 * 2**20), ("1024", 1024)],
)
def test_sysfs_cache_sizes(text: str, expected: int):
    assert parse_cache_size(text) == expected


def write_cache(root: Path, index: int, level: int, kind: str, size: str) -> None:
    folder = root / f"index{index}"
    folder.mkdir(parents=True)
    (folder / "level").write_text(f"{level}\n")
    (folder / "type").write_text(f"{kind}\n")
    (folder / "size").write_text(f"{size}\n")


def test_last_level_cache_is_the_highest_data_or_unified_level(tmp_path: Path):
    write_cache(tmp_path, 0, 1, "Data", "48K")
    write_cache(tmp_path, 1, 1, "Instruction", "32K")
    write_cache(tmp_path, 2, 2, "Unified", "2048K")
    write_cache(tmp_path, 3, 3, "Unified", "307200K")
    assert last_level_cache_bytes(tmp_path) == 300 * 2**20
    assert last_level_cache_bytes(tmp_path / "missing") is None


def test_stream_arrays_are_four_times_the_last_level_cache():
    # A 300 MiB L3 (this VM): arrays of 1200 MiB, so the copy cannot run from cache.
    assert stream_array_mib(300 * 2**20) == 1200
    assert stream_array_mib(8 * 2**20) == MIN_ARRAY_MIB
    assert stream_array_mib(None) == MIN_ARRAY_MIB
