"""The metrics contract: exact names, exact counts after N requests, gauges back to 0."""

from __future__ import annotations

import time

import httpx
import pytest

from bench.harness.metrics import family_names, scrape, value
from bench.harness.process import PredictorProcess
from bench.harness.sse import StreamTally, events

from .conftest import MODEL_NAME

pytestmark = pytest.mark.integration

CONTRACT = {
    "kzero_time_to_first_token_seconds",
    "kzero_inter_token_latency_seconds",
    "kzero_e2e_request_latency_seconds",
    "kzero_request_queue_seconds",
    "kzero_prompt_tokens",
    "kzero_prompt_tokens_cached",
    "kzero_prompt_tokens_computed",
    "kzero_generation_tokens",
    "kzero_requests",
    "kzero_requests_running",
    "kzero_requests_waiting",
    "kzero_cold_start_seconds",
    "kzero_cache_lookups",
    "kzero_cache_download_bytes",
    "kzero_prefix_cache_files",
    "kzero_prefix_cache_ram_bytes",
    "kzero_backend_info",
}
COUNTERS = (
    "kzero_requests_total",
    "kzero_prompt_tokens_total",
    "kzero_prompt_tokens_cached_total",
    "kzero_prompt_tokens_computed_total",
    "kzero_generation_tokens_total",
)
HISTOGRAM_COUNTS = (
    "kzero_time_to_first_token_seconds_count",
    "kzero_inter_token_latency_seconds_count",
    "kzero_e2e_request_latency_seconds_count",
    "kzero_request_queue_seconds_count",
)


def snapshot(url: str) -> dict[str, float]:
    samples = scrape(url)
    names = (*COUNTERS, *HISTOGRAM_COUNTS)
    result = {
        name: value(samples, name, model_name=MODEL_NAME, backend="llamacpp") for name in names
    }
    result["ok"] = value(samples, "kzero_requests_total", model_name=MODEL_NAME, status="ok")
    result["invalid"] = value(
        samples, "kzero_requests_total", model_name=MODEL_NAME, status="invalid"
    )
    return result


def test_exactly_the_contract_series_exist(predictor: PredictorProcess):
    # prometheus_client names counter families without "_total".
    assert family_names(predictor.url, "kzero_") == CONTRACT


def test_counts_after_n_requests_are_exact(predictor: PredictorProcess):
    before = snapshot(predictor.url)
    usages = []
    for prompt, stream in [("One", False), ("Two", True), ("Three", False)]:
        body = {"model": MODEL_NAME, "prompt": prompt, "max_tokens": 6, "temperature": 0}
        if stream:
            body |= {"stream": True, "stream_options": {"include_usage": True}}
            with httpx.stream(
                "POST", f"{predictor.url}/v1/completions", json=body, timeout=60
            ) as response:
                tally = StreamTally()
                for event in events(response.iter_lines()):
                    tally.add(event)
                assert tally.usage is not None
                usages.append(tally.usage)
        else:
            usages.append(
                httpx.post(f"{predictor.url}/v1/completions", json=body, timeout=60).json()["usage"]
            )
    httpx.post(
        f"{predictor.url}/v1/completions",
        json={"model": MODEL_NAME, "prompt": "x", "temperature": 9},
    )
    after = snapshot(predictor.url)
    delta = {name: after[name] - before[name] for name in after}

    completion_tokens = sum(u["completion_tokens"] for u in usages)
    assert delta["ok"] == 3
    assert delta["invalid"] == 1
    assert delta["kzero_requests_total"] == 4
    prompt_tokens = sum(u["prompt_tokens"] for u in usages)
    cached = sum(u["prompt_tokens_details"]["cached_tokens"] for u in usages)
    assert delta["kzero_prompt_tokens_total"] == prompt_tokens
    assert delta["kzero_prompt_tokens_cached_total"] == cached
    assert delta["kzero_prompt_tokens_computed_total"] == prompt_tokens - cached
    assert delta["kzero_generation_tokens_total"] == completion_tokens
    assert delta["kzero_time_to_first_token_seconds_count"] == 3
    assert delta["kzero_e2e_request_latency_seconds_count"] == 3
    assert delta["kzero_request_queue_seconds_count"] == 3
    # One gap between each pair of consecutive tokens.
    assert delta["kzero_inter_token_latency_seconds_count"] == completion_tokens - 3


def test_gauges_return_to_zero_after_aborted_requests(predictor: PredictorProcess):
    body = {"model": MODEL_NAME, "prompt": "1, 2, 3,", "max_tokens": 1500, "stream": True}
    for _ in range(3):
        with httpx.stream(
            "POST", f"{predictor.url}/v1/completions", json=body, timeout=60
        ) as response:
            next(response.iter_lines())
    samples = scrape(predictor.url)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (
        value(samples, "kzero_requests_running") or value(samples, "kzero_requests_waiting")
    ):
        time.sleep(0.1)
        samples = scrape(predictor.url)
    assert value(samples, "kzero_requests_running", model_name=MODEL_NAME) == 0
    assert value(samples, "kzero_requests_waiting", model_name=MODEL_NAME) == 0


def test_backend_info_names_engine_device_and_quantization(predictor: PredictorProcess):
    samples = scrape(predictor.url)
    info = [
        dict(labels)
        for (name, labels), v in samples.items()
        if name == "kzero_backend_info" and v == 1
    ]
    assert len(info) == 1
    assert info[0]["backend"] == "llamacpp"
    assert info[0]["device"] == "cpu"
    assert info[0]["quantization"] == "Q4_1"
    assert info[0]["model_name"] == MODEL_NAME
    assert "GGUF" in info[0]["reason"]


def test_cold_start_phases_are_recorded_once(predictor: PredictorProcess):
    samples = scrape(predictor.url)
    for phase in ("process_start", "load", "ready"):
        assert value(samples, "kzero_cold_start_seconds_count", phase=phase) == 1, phase
