"""A fresh predictor exports its counters at 0 before their first event.

``rate()`` and ``increase()`` need a sample before a counter's first increment: a
series that first appears already at 1 reads as "no change" (issue 13, defect
10). So every series whose labels are known at start exists from the start, and
a scrape while the model is still loading sees the pod's ``ready`` count at 0.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from bench.harness.metrics import Sample, scrape
from bench.harness.process import PredictorProcess

pytestmark = pytest.mark.integration

NAME = "initialised"
LABELS = {"model_name": NAME, "backend": "llamacpp"}
STATUSES = ("ok", "aborted", "invalid", "rejected", "error")
# Every counter and histogram count of the contract whose labels are known at start.
AT_ZERO = (
    "kzero_prompt_tokens_total",
    "kzero_prompt_tokens_computed_total",
    "kzero_generation_tokens_total",
    "kzero_cache_download_bytes_total",
    "kzero_requests_running",
    "kzero_requests_waiting",
    "kzero_time_to_first_token_seconds_count",
    "kzero_inter_token_latency_seconds_count",
    "kzero_e2e_request_latency_seconds_count",
    "kzero_request_queue_seconds_count",
)


def exact(samples: dict[Sample, float], name: str, **labels: str) -> float | None:
    """The one sample with exactly these labels (model and backend included), or None."""
    wanted = frozenset({**LABELS, **labels}.items())
    return samples.get((name, wanted))


def test_a_loading_predictor_exports_its_series_at_zero(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    script = [sys.executable, str(Path(__file__).with_name("gated_predictor.py"))]
    server = PredictorProcess(
        ["--model_name", NAME], script=script, env={"KZERO_TEST_LOAD_GATE": str(gate)}
    )
    try:
        server.wait_for_200("/v2/health/live")  # the port is open; the model still loads
        loading = scrape(server.url)  # the model load is held: no request, not ready

        for status in STATUSES:
            assert exact(loading, "kzero_requests_total", status=status) == 0, status
        for source in ("memory", "copy", "ram", "disk"):
            assert exact(loading, "kzero_prompt_tokens_cached_total", source=source) == 0
        for result in ("restored", "saved", "corrupt", "foreign", "rejected"):
            assert exact(loading, "kzero_prefix_cache_files_total", result=result) == 0
        assert exact(loading, "kzero_prefix_cache_ram_bytes") == 0
        for name in AT_ZERO:
            assert exact(loading, name) == 0, name
        # The bundled model is a local path: the lookup already happened, once.
        assert exact(loading, "kzero_cache_lookups_total", result="local") == 1
        assert exact(loading, "kzero_cache_lookups_total", result="hit") == 0
        assert exact(loading, "kzero_cache_lookups_total", result="miss") == 0
        # The pod start is visible as 0 -> 1: counted by increase() over the load.
        assert exact(loading, "kzero_cold_start_seconds_count", phase="process_start") == 1
        assert exact(loading, "kzero_cold_start_seconds_count", phase="load") == 0
        assert exact(loading, "kzero_cold_start_seconds_count", phase="ready") == 0
        # Phases that only some models run appear only when they run.
        for phase in ("cache", "download", "verify"):
            assert exact(loading, "kzero_cold_start_seconds_count", phase=phase) is None, phase

        gate.touch()
        server.wait_ready(NAME)
        ready = scrape(server.url)
        assert exact(ready, "kzero_cold_start_seconds_count", phase="load") == 1
        assert exact(ready, "kzero_cold_start_seconds_count", phase="ready") == 1
        assert exact(ready, "kzero_requests_total", status="ok") == 0
    finally:
        server.stop()
