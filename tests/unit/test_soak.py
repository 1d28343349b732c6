"""The soak's judgement without a server: how a stream is classified, and the RSS math.

The integration smoke (tests/integration/test_soak_smoke.py) only ever sees a
healthy server, so every failure kind the soak counts is pinned here against
scripted responses.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from bench.harness.metrics import Samples, parse
from bench.soak.client import RequestResult, stream_chat
from bench.soak.judge import judge
from bench.soak.load import SoakConfig, SoakRun
from bench.soak.memory import RssSample, process_tree, rss_growth, sample_process_tree

URL = "http://soak.test/v1/chat/completions"


def event(payload: dict[str, object] | str) -> bytes:
    return (
        b"data: "
        + (payload if isinstance(payload, str) else json.dumps(payload)).encode()
        + b"\n\n"
    )


def chunk(content: str, finish_reason: str | None = None) -> bytes:
    return event(
        {"choices": [{"index": 0, "delta": {"content": content}, "finish_reason": finish_reason}]}
    )


USAGE = event({"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 2}})
DONE = event("[DONE]")


class _Body(httpx.AsyncByteStream):
    def __init__(self, parts: list[bytes], stall_s: float = 0.0) -> None:
        self._parts = parts
        self._stall_s = stall_s

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for part in self._parts:
            yield part
        if self._stall_s:
            await asyncio.sleep(self._stall_s)


async def run(parts: list[bytes], status: int = 200, stall_s: float = 0.0) -> RequestResult:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, stream=_Body(parts, stall_s))

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        return await stream_chat(client, URL, {}, deadline_s=0.5)


async def test_a_complete_stream_is_ok_with_usage_and_ttft():
    result = await run([chunk("Hel"), chunk("lo", "stop"), USAGE, DONE])
    assert result.outcome == "ok"
    assert (result.prompt_tokens, result.completion_tokens) == (7, 2)
    assert result.ttft_s is not None and result.ttft_s <= result.latency_s


@pytest.mark.parametrize(
    ("parts", "status", "outcome"),
    [
        ([b'{"error": {"message": "busy"}}'], 429, "http_429"),
        ([chunk("Hi"), event({"error": {"message": "engine failed"}}), DONE], 200, "sse_error"),
        ([chunk("Hi", "stop"), USAGE], 200, "missing_done"),
        ([chunk("Hi"), USAGE, DONE], 200, "missing_finish_reason"),
        ([chunk("Hi", "stop"), DONE], 200, "missing_usage"),
        ([b"data: {not json\n\n"], 200, "malformed_event"),
    ],
)
async def test_each_failure_is_named(parts: list[bytes], status: int, outcome: str):
    assert (await run(parts, status)).outcome == outcome


async def test_a_stream_past_its_deadline_is_stuck():
    result = await run([chunk("Hi")], stall_s=5.0)
    assert result.outcome == "stuck"
    assert 0.5 <= result.latency_s < 2.0
    assert "1 content chunks" in result.detail


async def test_a_refused_connection_is_a_transport_error():
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        result = await stream_chat(client, URL, {}, deadline_s=0.5)
    assert result.outcome == "transport_ConnectError"


def samples(values: list[int], every_s: float = 5.0) -> list[RssSample]:
    return [RssSample(i * every_s, v, 10, 20) for i, v in enumerate(values)]


def test_rss_growth_compares_medians_after_warm_up():
    # Warm-up (t < 10 s) grows fast and is ignored; one spike in each window is ignored.
    values = [50, 80, 100, 100, 900, 100, 100, 100, 100, 104, 104, 900, 104]
    report = rss_growth(samples(values), warmup_s=10.0, sample_every_s=5.0)
    assert report["window_samples"] == 3  # a third of the 11 samples after warm-up
    assert report["baseline_bytes"] == 100 and report["final_bytes"] == 104
    assert report["growth"] == pytest.approx(0.04)


def test_rss_growth_needs_two_samples_after_warm_up():
    assert rss_growth(samples([100, 100, 100]), warmup_s=10.0, sample_every_s=5.0)["growth"] is None


def test_this_process_can_be_sampled():
    sample = sample_process_tree(os.getpid(), 0.0)
    assert sample.rss_bytes > 0 and sample.threads >= 1 and sample.open_fds >= 3
    assert process_tree(os.getpid())[0] == os.getpid()


def config() -> SoakConfig:
    return SoakConfig(
        model=Path("m.gguf"),
        duration_s=60,
        concurrency=2,
        warmup_s=10,
        max_tokens=8,
        request_timeout_s=30,
        sample_every_s=5,
    )


def metrics(ok: int, generation: int, prompt: int, waiting: int = 0) -> Samples:
    """A /metrics page as a predictor serves it, read by the soak's own parser."""
    labels = 'model_name="m",backend="llamacpp"'
    return parse(
        "# TYPE kzero_requests_total counter\n"
        f'kzero_requests_total{{{labels},status="ok"}} {ok}\n'
        "# TYPE kzero_generation_tokens_total counter\n"
        f"kzero_generation_tokens_total{{{labels}}} {generation}\n"
        "# TYPE kzero_prompt_tokens_total counter\n"
        f"kzero_prompt_tokens_total{{{labels}}} {prompt}\n"
        "# TYPE kzero_requests_running gauge\n"
        f"kzero_requests_running{{{labels}}} 0\n"
        "# TYPE kzero_requests_waiting gauge\n"
        f"kzero_requests_waiting{{{labels}}} {waiting}\n"
    )


def clean_run() -> SoakRun:
    return SoakRun(
        results=[RequestResult("ok", 1.0, 0.1, 7, 2), RequestResult("ok", 1.2, 0.2, 5, 3)],
        rss=samples([100] * 12),
        load_s=60.0,
        metrics_before=metrics(ok=4, generation=10, prompt=0),
        metrics_after=metrics(ok=6, generation=15, prompt=12),
    )


def test_a_clean_run_passes_every_criterion():
    summary = judge(config(), clean_run())
    assert summary["failed"] == [] and summary["passed"]


def test_failures_are_named():
    run = clean_run()
    run.results.append(RequestResult("stuck", 30.0))
    run.results.append(RequestResult("http_503", 0.1))
    run.rss = samples([100] * 6 + [110] * 6)
    run.metrics_after = metrics(ok=6, generation=15, prompt=12, waiting=1)
    summary = judge(config(), run)
    assert summary["failed"] == ["errors", "stuck", "rss_growth", "gauges", "counters"]
    assert summary["criteria"]["errors"]["detail"] == "http_503 1"
    assert summary["requests"] == {"total": 4, "ok": 2, "stuck": 1, "errors": {"http_503": 1}}


def test_a_status_the_soak_does_not_know_is_still_counted():
    run = clean_run()
    run.results.append(RequestResult("http_503", 0.1))
    run.metrics_after |= parse(
        "# TYPE kzero_requests_total counter\n"
        'kzero_requests_total{model_name="m",backend="llamacpp",status="shed"} 1\n'
    )
    summary = judge(config(), run)
    assert summary["counters"]["server_requests"] == {"ok": 2.0, "shed": 1.0}
    assert "counters" not in summary["failed"]


def test_a_failed_last_scrape_fails_gauges_and_counters():
    run = clean_run()
    run.metrics_after = {}
    summary = judge(config(), run)
    assert {"gauges", "counters"} <= set(summary["failed"])
