"""GenerationService and Prepared with a scripted backend: limits, refusals, statuses, gauges."""

from __future__ import annotations

import asyncio

import pytest

from predictor.errors import (
    ContextTooLong,
    Draining,
    EngineDead,
    GenerationFailed,
    InvalidParam,
    NotReady,
    Overloaded,
    RequestTimedOut,
    UnknownModel,
)
from predictor.generation import ChatInput, GenerationParams, GenerationService, TextInput
from predictor.metrics import REQUESTS, REQUESTS_RUNNING, REQUESTS_WAITING
from tests.unit.scripted_backend import BACKEND, MODEL, ScriptedBackend, scripted_service


def params(max_tokens: int | None = 8, stop: tuple[str, ...] = ()) -> GenerationParams:
    return GenerationParams(max_tokens=max_tokens, stop=stop)


def words(count: int) -> TextInput:
    """A prompt of exactly ``count`` tokens for the scripted backend."""
    return TextInput(" ".join(["w"] * count))


def gauge(metric) -> float:  # type: ignore[no-untyped-def]
    return metric.labels(MODEL, BACKEND)._value.get()


def requests(status: str) -> float:
    return REQUESTS.labels(MODEL, BACKEND, status)._value.get()


async def prepare(svc: GenerationService, tokens: int = 1, **kwargs):  # type: ignore[no-untyped-def]
    return await svc.prepare(words(tokens), kwargs.pop("p", params()), **kwargs)


async def test_max_tokens_defaults_to_the_room_left_capped():
    svc = scripted_service()
    near_full = await svc.prepare(words(90), GenerationParams(max_tokens=None))
    short = await svc.prepare(words(10), GenerationParams(max_tokens=None))
    assert (near_full.options.max_tokens, short.options.max_tokens) == (10, 50)
    near_full.close()
    short.close()


async def test_prompt_filling_the_context_is_context_too_long():
    with pytest.raises(ContextTooLong, match="maximum context length is 100") as caught:
        await scripted_service().prepare(words(100), GenerationParams(max_tokens=None))
    assert caught.value.param == "prompt"


async def test_max_tokens_beyond_the_room_is_context_too_long():
    with pytest.raises(ContextTooLong, match="90 in the prompt, 20 for the completion"):
        await scripted_service().prepare(words(90), GenerationParams(max_tokens=20))


async def test_max_tokens_above_the_cap_is_invalid_even_if_it_would_fit():
    with pytest.raises(InvalidParam, match="limit of 50") as caught:
        await scripted_service().prepare(words(1), GenerationParams(max_tokens=51))
    assert caught.value.param == "max_tokens"


async def test_an_empty_prompt_is_invalid():
    with pytest.raises(InvalidParam, match="must not be empty"):
        await scripted_service().prepare(TextInput(""), params())


async def test_a_conversation_the_template_refuses_is_invalid_messages():
    svc = scripted_service()
    with pytest.raises(InvalidParam, match="roles") as caught:
        await svc.prepare(ChatInput([{"role": "tool", "content": "x"}]), params())
    assert caught.value.param == "messages"


async def test_another_model_name_is_unknown_before_readiness_is_asked():
    with pytest.raises(UnknownModel):
        await scripted_service(ready=False).prepare(words(1), params(), model="other")


async def test_not_ready_draining_and_failed_each_refuse_with_their_own_error():
    svc = scripted_service(ready=False)
    with pytest.raises(NotReady):
        await prepare(svc)
    svc.lifecycle.mark_ready()
    svc.lifecycle.request_drain()
    with pytest.raises(Draining):
        await prepare(svc)
    svc.lifecycle.fail("test")
    with pytest.raises(EngineDead):
        await prepare(svc)


def test_a_drain_during_loading_is_not_undone_by_the_load_finishing():
    svc = scripted_service(ready=False)
    svc.lifecycle.request_drain()
    svc.lifecycle.mark_ready()
    with pytest.raises(Draining):
        svc.lifecycle.require_serving()


async def test_every_refusal_is_counted_once_by_its_outcome():
    svc = scripted_service(max_running=1, max_queued=0)
    before = {status: requests(status) for status in ("invalid", "rejected")}
    held = await prepare(svc)
    for bad in (GenerationParams(max_tokens=51), GenerationParams(max_tokens=1, stop=("",))):
        with pytest.raises(InvalidParam):
            await svc.prepare(words(1), bad)
    with pytest.raises(Overloaded):
        await prepare(svc)
    held.close()
    assert requests("invalid") == before["invalid"] + 2
    assert requests("rejected") == before["rejected"] + 1


async def test_prompt_above_the_prompt_limit_is_invalid():
    svc = scripted_service(max_prompt_tokens=10)
    with pytest.raises(InvalidParam, match=r"prompt is 11 tokens, above .* limit of 10"):
        await prepare(svc, 11)
    prepared = await prepare(svc, 10)
    assert prepared.options.max_tokens == 8
    prepared.close()


@pytest.mark.parametrize(
    ("stop", "message"),
    [
        (("a", "b", "c"), "3 stop sequences given; .* at most 2"),
        (("x" * 6,), "longer than .* limit of 5 characters"),
        (("",), "must not be empty"),
    ],
)
async def test_stop_sequences_beyond_the_limits_are_invalid(stop: tuple[str, ...], message: str):
    svc = scripted_service(max_stop_sequences=2, max_stop_length=5)
    with pytest.raises(InvalidParam, match=message) as caught:
        await prepare(svc, p=params(stop=stop))
    assert caught.value.param == "stop"


async def test_a_request_past_its_deadline_is_aborted_with_a_timeout():
    backend = ScriptedBackend(token_delay_s=0.05)
    svc = scripted_service(backend, request_timeout_s=0.12)
    prepared = await prepare(svc)
    seen = []
    with pytest.raises(RequestTimedOut):
        async for delta in prepared.stream():
            seen.append(delta.text)
    assert 0 < len(seen) < 8
    assert prepared.completion.request_id in backend.aborted
    assert svc.admission.in_flight == 0
    assert gauge(REQUESTS_RUNNING) == gauge(REQUESTS_WAITING) == 0


async def test_queueing_counts_against_the_deadline():
    backend = ScriptedBackend(token_delay_s=0.05)
    svc = scripted_service(backend, request_timeout_s=0.1)
    first = await prepare(svc)
    running = asyncio.create_task(first.text())
    await asyncio.sleep(0)
    queued = await prepare(svc)
    with pytest.raises(RequestTimedOut):
        await queued.text()
    with pytest.raises(RequestTimedOut):
        await running
    assert queued.completion.request_id not in backend.started
    assert svc.admission.in_flight == 0


async def test_cut_off_ends_running_and_queued_requests_with_the_error():
    svc = scripted_service(ScriptedBackend(token_delay_s=0.01))
    running = asyncio.create_task((await prepare(svc)).text())
    queued = asyncio.create_task((await prepare(svc)).text())
    await asyncio.sleep(0.02)
    await svc.cut_off(Draining)
    for task in (running, queued):
        with pytest.raises(Draining):
            await task
    assert svc.admission.in_flight == 0
    assert gauge(REQUESTS_RUNNING) == gauge(REQUESTS_WAITING) == 0


async def test_an_engine_failure_fails_the_request_and_the_lifecycle_once():
    backend = ScriptedBackend()
    backend.fail_after = 2
    svc = scripted_service(backend)
    with pytest.raises(GenerationFailed):
        await (await prepare(svc)).text()
    assert svc.lifecycle.failed and svc.lifecycle.exit_code == 1
    with pytest.raises(EngineDead):
        await prepare(svc)
    assert svc.admission.in_flight == 0


async def test_a_request_error_with_a_healthy_engine_is_not_an_engine_failure():
    backend = ScriptedBackend()
    backend.fail_after = 1

    async def still_healthy() -> bool:
        return True

    backend.healthy = still_healthy  # type: ignore[method-assign]
    svc = scripted_service(backend)
    with pytest.raises(GenerationFailed):
        await (await prepare(svc)).text()
    assert not svc.lifecycle.failed
    (await prepare(svc)).close()


async def test_text_counts_tokens_and_finishes():
    svc = scripted_service()
    before = requests("ok")
    prepared = await svc.prepare(words(3), GenerationParams(max_tokens=3))
    assert await prepared.text() == "abc"
    completion = prepared.completion
    assert (completion.completion_tokens, completion.finish_reason) == (3, "length")
    assert completion.usage() == {
        "prompt_tokens": 3,
        "completion_tokens": 3,
        "total_tokens": 6,
        "prompt_tokens_details": {"cached_tokens": 0},
    }
    assert requests("ok") == before + 1
    assert gauge(REQUESTS_RUNNING) == gauge(REQUESTS_WAITING) == 0
    assert svc.admission.in_flight == 0


async def test_abort_ends_the_stream_quietly_and_counts_it():
    svc = scripted_service()
    prepared = await prepare(svc)
    before = requests("aborted")
    seen = []
    async for delta in prepared.stream():
        seen.append(delta.text)
        if len(seen) == 2:
            await prepared.abort()
    assert seen == ["a", "b"]
    assert requests("aborted") == before + 1
    assert gauge(REQUESTS_RUNNING) == gauge(REQUESTS_WAITING) == 0


async def test_closing_the_stream_early_counts_as_aborted_and_resets_gauges():
    svc = scripted_service()
    prepared = await prepare(svc)
    before = requests("aborted")
    stream = prepared.stream()
    await anext(stream)
    await stream.aclose()
    prepared.close()  # the door's close after the stream's own: counted once
    assert requests("aborted") == before + 1
    assert gauge(REQUESTS_RUNNING) == gauge(REQUESTS_WAITING) == 0
    assert svc.admission.in_flight == 0


async def test_a_request_closed_before_it_started_frees_its_place_and_counts_as_aborted():
    svc = scripted_service(max_running=1, max_queued=0)
    before = requests("aborted")
    prepared = await prepare(svc)
    prepared.close()
    prepared.close()
    assert requests("aborted") == before + 1
    assert svc.admission.in_flight == 0
    (await prepare(svc)).close()  # the place is free again


async def test_a_queued_request_whose_client_left_never_reaches_the_engine():
    backend = ScriptedBackend(token_delay_s=0.02)
    svc = scripted_service(backend, max_running=1)
    running = asyncio.create_task((await prepare(svc)).text())
    queued = await prepare(svc)
    waiting = asyncio.create_task(queued.text())
    await asyncio.sleep(0.01)
    await queued.abort()
    assert await waiting == ""
    await running
    assert queued.completion.request_id not in backend.started
    assert svc.admission.in_flight == 0
    assert gauge(REQUESTS_RUNNING) == gauge(REQUESTS_WAITING) == 0
