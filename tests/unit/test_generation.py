"""GenerationService logic with a scripted backend: limits, statuses and gauges."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from predictor.backends.base import (
    BackendInfo,
    GenerationChunk,
    OnStart,
    Prompt,
    RequestAborted,
    SamplingOptions,
)
from predictor.generation import GenerationParams, GenerationService, new_completion
from predictor.metrics import REQUESTS, REQUESTS_RUNNING, REQUESTS_WAITING
from predictor.openai.errors import ContextLengthExceeded, InvalidRequest, ModelNotReady

CONTEXT = 100


class ScriptedBackend:
    """Yields one token per word of ``script``; ``abort`` ends the stream like an engine would."""

    def __init__(self, script: str = "a b c d e f g h") -> None:
        self.script = script.split()
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
            await asyncio.sleep(0)
            if request_id in self.aborted:
                raise RequestAborted(request_id)
            last = index == options.max_tokens or index == len(self.script)
            reason = ("length" if index == options.max_tokens else "stop") if last else None
            yield GenerationChunk(text=word, num_tokens=1, finish_reason=reason)

    async def abort(self, request_id: str) -> None:
        self.aborted.add(request_id)


def service(backend: ScriptedBackend | None = None) -> GenerationService:
    svc = GenerationService(
        backend or ScriptedBackend(), backend_name="fake", model_name="m", max_tokens_cap=50
    )  # type: ignore[arg-type]
    svc.mark_ready()
    return svc


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
    svc = GenerationService(
        ScriptedBackend(), backend_name="fake", model_name="m", max_tokens_cap=5
    )  # type: ignore[arg-type]
    with pytest.raises(ModelNotReady):
        svc.require_ready()


async def test_complete_counts_tokens_and_finishes():
    svc = service()
    p = prompt(3)
    completion = new_completion(p)
    before = requests("ok")
    text = await svc.complete(
        p, svc.sampling_options(p, GenerationParams(max_tokens=3)), completion
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
        p, svc.sampling_options(p, GenerationParams(max_tokens=8)), completion
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
        p, svc.sampling_options(p, GenerationParams(max_tokens=8)), new_completion(p)
    )
    await anext(stream)
    await stream.aclose()
    assert requests("aborted") == before + 1
    assert gauge(REQUESTS_RUNNING) == gauge(REQUESTS_WAITING) == 0
