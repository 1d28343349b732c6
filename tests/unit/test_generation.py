"""GenerationService logic with a scripted backend: limits, statuses and gauges."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from predictor.admission import Admission
from predictor.backends.base import (
    BackendInfo,
    GenerationChunk,
    OnStart,
    Prompt,
    RequestAborted,
    SamplingOptions,
)
from predictor.generation import (
    GenerationParams,
    GenerationService,
    RequestLimits,
    new_completion,
)
from predictor.metrics import REQUESTS, REQUESTS_RUNNING, REQUESTS_WAITING
from predictor.openai.errors import (
    ContextLengthExceeded,
    EngineDead,
    InvalidRequest,
    ModelNotReady,
    RequestTimeout,
    ShuttingDown,
)

CONTEXT = 100


class ScriptedBackend:
    """Yields one token per word of ``script``; ``abort`` ends the stream like an engine would."""

    def __init__(self, script: str = "a b c d e f g h", *, token_delay_s: float = 0.0) -> None:
        self.script = script.split()
        self.token_delay_s = token_delay_s
        self.fail_after: int | None = None
        self.alive = True
        self.aborted: set[str] = set()
        self.info = BackendInfo(
            backend="fake",
            device="cpu",
            model_path="-",
            quantization="none",
            context_length=CONTEXT,
        )

    async def generate(
        self,
        request_id: str,
        prompt: Prompt,
        options: SamplingOptions,
        on_start: OnStart | None = None,
    ) -> AsyncIterator[GenerationChunk]:
        if on_start:
            on_start()
        for index, word in enumerate(self.script[: options.max_tokens], start=1):
            await asyncio.sleep(self.token_delay_s)
            if request_id in self.aborted:
                raise RequestAborted(request_id)
            if self.fail_after is not None and index > self.fail_after:
                self.alive = False
                raise RuntimeError("decode failed")
            last = index == options.max_tokens or index == len(self.script)
            reason = ("length" if index == options.max_tokens else "stop") if last else None
            yield GenerationChunk(text=word, num_tokens=1, finish_reason=reason)

    async def abort(self, request_id: str) -> None:
        self.aborted.add(request_id)

    async def healthy(self) -> bool:
        return self.alive


def service(
    backend: ScriptedBackend | None = None,
    *,
    ready: bool = True,
    max_running: int = 1,
    **limits: float,
) -> GenerationService:
    svc = GenerationService(
        backend or ScriptedBackend(),  # type: ignore[arg-type]
        backend_name="fake",
        model_name="m",
        limits=RequestLimits(**{"max_tokens_cap": 50, **limits}),  # type: ignore[arg-type]
        admission=Admission(max_running=max_running, max_queued=4),
    )
    if ready:
        svc.mark_ready()
    return svc


def params(max_tokens: int | None = 8, stop: tuple[str, ...] = ()) -> GenerationParams:
    return GenerationParams(max_tokens=max_tokens, stop=stop)


def prompt(tokens: int) -> Prompt:
    return Prompt(text="x", token_ids=list(range(tokens)))


def gauge(metric) -> float:  # type: ignore[no-untyped-def]
    return metric.labels("m", "fake")._value.get()


def requests(status: str) -> float:
    return REQUESTS.labels("m", "fake", status)._value.get()


def test_max_tokens_defaults_to_the_room_left_capped():
    svc = service()
    assert svc.sampling_options(prompt(90), GenerationParams(max_tokens=None)).max_tokens == 10
    assert svc.sampling_options(prompt(10), GenerationParams(max_tokens=None)).max_tokens == 50


def test_prompt_filling_the_context_is_context_length_exceeded():
    with pytest.raises(ContextLengthExceeded, match="maximum context length is 100"):
        service().sampling_options(prompt(100), GenerationParams(max_tokens=None))


def test_max_tokens_beyond_the_room_is_context_length_exceeded():
    with pytest.raises(ContextLengthExceeded, match="90 in the prompt, 20 for the completion"):
        service().sampling_options(prompt(90), GenerationParams(max_tokens=20))


def test_max_tokens_above_the_cap_is_invalid_even_if_it_would_fit():
    with pytest.raises(InvalidRequest, match="limit of 50"):
        service().sampling_options(prompt(1), GenerationParams(max_tokens=51))


def test_not_ready_is_503():
    with pytest.raises(ModelNotReady):
        service(ready=False).require_ready()


def test_draining_and_failed_services_refuse_with_their_own_503():
    svc = service()
    svc.begin_drain()
    with pytest.raises(ShuttingDown):
        svc.admit()
    svc.mark_failed()
    with pytest.raises(EngineDead):
        svc.admit()


def test_a_drain_during_loading_is_not_undone_by_the_load_finishing():
    svc = service(ready=False)
    svc.begin_drain()
    svc.mark_ready()
    with pytest.raises(ShuttingDown):
        svc.require_ready()


def test_prompt_above_the_prompt_limit_is_invalid():
    with pytest.raises(InvalidRequest, match=r"prompt is 11 tokens, above .* limit of 10"):
        service(max_prompt_tokens=10).sampling_options(prompt(11), params())
    assert service(max_prompt_tokens=10).sampling_options(prompt(10), params()).max_tokens == 8


@pytest.mark.parametrize(
    ("stop", "message"),
    [
        (("a", "b", "c"), "3 stop sequences given; .* at most 2"),
        (("x" * 6,), "longer than .* limit of 5 characters"),
        (("",), "must not be empty"),
    ],
)
def test_stop_sequences_beyond_the_limits_are_invalid(stop: tuple[str, ...], message: str):
    svc = service(max_stop_sequences=2, max_stop_length=5)
    with pytest.raises(InvalidRequest, match=message) as caught:
        svc.sampling_options(prompt(1), params(stop=stop))
    assert caught.value.param == "stop"


async def test_a_request_past_its_deadline_is_aborted_with_504():
    backend = ScriptedBackend(token_delay_s=0.05)
    svc = service(backend, request_timeout_s=0.12)
    p = prompt(1)
    completion = new_completion(p)
    seen = []
    with pytest.raises(RequestTimeout):
        async for delta in svc.stream(
            p, svc.sampling_options(p, params()), completion, svc.admit()
        ):
            seen.append(delta.text)
    assert 0 < len(seen) < 8
    assert completion.request_id in backend.aborted
    assert svc.admission.in_flight == 0
    assert gauge(REQUESTS_RUNNING) == gauge(REQUESTS_WAITING) == 0


async def test_queueing_counts_against_the_deadline():
    svc = service(ScriptedBackend(token_delay_s=0.05), request_timeout_s=0.1)
    p = prompt(1)
    first = asyncio.create_task(
        svc.complete(p, svc.sampling_options(p, params()), new_completion(p), svc.admit())
    )
    await asyncio.sleep(0)
    with pytest.raises(RequestTimeout):
        await svc.complete(p, svc.sampling_options(p, params()), new_completion(p), svc.admit())
    with pytest.raises(RequestTimeout):
        await first
    assert svc.admission.in_flight == 0


async def test_cut_off_ends_running_and_queued_requests_with_the_error():
    svc = service(ScriptedBackend(token_delay_s=0.01))
    p = prompt(1)
    running = asyncio.create_task(
        svc.complete(p, svc.sampling_options(p, params()), new_completion(p), svc.admit())
    )
    queued = asyncio.create_task(
        svc.complete(p, svc.sampling_options(p, params()), new_completion(p), svc.admit())
    )
    await asyncio.sleep(0.02)
    await svc.cut_off(ShuttingDown)
    for task in (running, queued):
        with pytest.raises(ShuttingDown):
            await task
    assert svc.admission.in_flight == 0
    assert gauge(REQUESTS_RUNNING) == gauge(REQUESTS_WAITING) == 0


async def test_an_engine_failure_is_reported_once_and_the_request_fails():
    backend = ScriptedBackend()
    backend.fail_after = 2
    svc = service(backend)
    failures: list[BaseException] = []
    svc.on_engine_failure = failures.append
    p = prompt(1)
    with pytest.raises(RuntimeError, match="decode failed"):
        await svc.complete(p, svc.sampling_options(p, params()), new_completion(p), svc.admit())
    assert [str(error) for error in failures] == ["decode failed"]
    with pytest.raises(EngineDead):
        svc.admit()
    assert svc.admission.in_flight == 0


async def test_a_request_error_with_a_healthy_engine_is_not_an_engine_failure():
    backend = ScriptedBackend()
    backend.fail_after = 1
    svc = service(backend)
    failures: list[BaseException] = []
    svc.on_engine_failure = failures.append
    backend_healthy = backend.healthy

    async def still_healthy() -> bool:
        await backend_healthy()
        return True

    backend.healthy = still_healthy  # type: ignore[method-assign]
    p = prompt(1)
    with pytest.raises(RuntimeError):
        await svc.complete(p, svc.sampling_options(p, params()), new_completion(p), svc.admit())
    assert failures == []
    svc.admit().release()


async def test_complete_counts_tokens_and_finishes():
    svc = service()
    p = prompt(3)
    completion = new_completion(p)
    before = requests("ok")
    text = await svc.complete(
        p, svc.sampling_options(p, GenerationParams(max_tokens=3)), completion, svc.admit()
    )
    assert text == "abc"
    assert (completion.completion_tokens, completion.finish_reason) == (3, "length")
    assert requests("ok") == before + 1
    assert gauge(REQUESTS_RUNNING) == gauge(REQUESTS_WAITING) == 0


async def test_abort_ends_the_stream_quietly_and_counts_it():
    backend = ScriptedBackend()
    svc = service(backend)
    p = prompt(3)
    completion = new_completion(p)
    before = requests("aborted")
    seen = []
    async for delta in svc.stream(
        p, svc.sampling_options(p, GenerationParams(max_tokens=8)), completion, svc.admit()
    ):
        seen.append(delta.text)
        if len(seen) == 2:
            await svc.abort(completion)
    assert seen == ["a", "b"]
    assert requests("aborted") == before + 1
    assert gauge(REQUESTS_RUNNING) == gauge(REQUESTS_WAITING) == 0


async def test_closing_the_stream_early_counts_as_aborted_and_resets_gauges():
    svc = service()
    p = prompt(3)
    before = requests("aborted")
    stream = svc.stream(
        p, svc.sampling_options(p, GenerationParams(max_tokens=8)), new_completion(p), svc.admit()
    )
    await anext(stream)
    await stream.aclose()
    assert requests("aborted") == before + 1
    assert gauge(REQUESTS_RUNNING) == gauge(REQUESTS_WAITING) == 0
