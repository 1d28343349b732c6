"""``kzero bench coldstart``'s bookkeeping: states, the shared engine configuration, the ratio."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.coldstart import (
    LLAMA_SERVER,
    ColdStart,
    EngineConfig,
    _states,
    engine_config,
    format_report,
    summarize,
)
from predictor.backends.gguf_metadata import read_gguf_metadata
from predictor.backends.llamacpp import default_parallel
from predictor.cpu_quota import usable_cpu_count
from predictor.default_model import default_model_path

CONFIG = EngineConfig(n_threads=2, n_ctx=4096, n_parallel=4, n_batch=512)


def test_comparing_with_llama_server_adds_the_local_state():
    assert _states("miss,hit", vs_llama_server=True) == ("miss", "hit", "local")
    assert _states("local,local", vs_llama_server=True) == ("local",)
    assert _states("hot", vs_llama_server=False) == ("hot",)
    with pytest.raises(ValueError, match="--states"):
        _states("warm", vs_llama_server=False)


def test_both_servers_get_kzeros_defaults_for_this_machine_and_model():
    model = default_model_path()
    metadata = read_gguf_metadata(model)
    config = engine_config(model, None, None)
    assert config.n_threads == usable_cpu_count()
    assert config.n_ctx == min(metadata.context_length or 4096, 4096)
    assert config.n_parallel == default_parallel(
        config.n_threads, config.n_ctx, metadata.kv_bytes_per_token
    )
    assert engine_config(model, 512, 1) == EngineConfig(config.n_threads, 512, 1, config.n_batch)
    assert CONFIG.kzero_args() == [
        "--n_threads", "2", "--n_ctx", "4096", "--n_batch", "512", "--max_running_requests", "4",
    ]  # fmt: skip


def test_the_ratio_is_of_the_medians_and_each_round_is_kept():
    runs = []
    for kzero_s, llama_s in ((0.8, 0.4), (0.9, 0.5), (0.7, 0.4)):
        runs.append(ColdStart("local", kzero_s, kzero_s + 0.05, {"process_start": 0.5}))
        runs.append(ColdStart("local", llama_s, llama_s + 0.05, server=LLAMA_SERVER))
    report = summarize(runs, [], 1000)
    versus = report["vs_llama_server"]
    assert versus["kzero"]["ready_s"] == 0.8 and versus["llama_server"]["ready_s"] == 0.4
    assert versus["ready_ratio"] == pytest.approx(2.0)
    assert versus["ready_ratio_by_round"] == pytest.approx([2.0, 1.8, 1.75])
    assert "disk_read_s" not in report  # no hit state: no disk figures
    text = format_report(report, Path("m.gguf"), CONFIG)
    assert "kzero / llama-server: ready 2.00" in text
    assert "round by round 1.75 to 2.00" in text
