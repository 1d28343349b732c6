"""vLLM's prefix cache hits, as kzero reports them: usage and the prompt-token counters.

Proven against the fake vLLM only (tests/fakes/vllm): its ``PrefixCache``
follows vLLM's rules (full 16-token blocks found by a hash chained over the
prefix; at most all but the last prompt token reused) and reports hits in
``RequestOutput.num_cached_tokens``, as vLLM's V1 engine does. No GPU runs
here, so real vLLM's cache is not exercised by these tests;
tests/gpu/test_vllm_backend_real.py checks a hit on a real engine where a GPU
is present.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from predictor.admission import Admission
from predictor.backends.base import GenerationChunk, Prompt, SamplingOptions
from predictor.backends.vllm import VllmBackend
from predictor.generation import GenerationService, RequestLimits
from predictor.lifecycle import Lifecycle
from predictor.metrics import PROMPT_TOKENS, PROMPT_TOKENS_CACHED, PROMPT_TOKENS_COMPUTED
from tests.unit import test_vllm_backend as shared
from tests.unit.inprocess import client, kzero_app, sse_payloads

# The fake vLLM on sys.path and a model directory, as in test_vllm_backend.py.
fake_vllm = shared.fake_vllm
model_dir = shared.model_dir
_loaded = shared._loaded
_collect = shared._collect

BLOCK = 16  # vLLM's block size on CUDA
OPTIONS = SamplingOptions(max_tokens=4, temperature=0.0)


def _prompt(ids: list[int]) -> Prompt:
    return Prompt(text="", token_ids=ids)


def _tokens(text: str) -> list[int]:
    return [1, *(b + 3 for b in text.encode())]  # BOS, then one token per byte


def _first_and_rest(chunks: list[GenerationChunk]) -> tuple[tuple[int, Any], set[tuple[int, Any]]]:
    first, *rest = chunks
    return (first.cached_tokens, first.cache_source), {
        (c.cached_tokens, c.cache_source) for c in rest
    }


async def test_prefix_caching_is_turned_on_explicitly(fake_vllm: Any, model_dir: Path) -> None:
    await _loaded(model_dir)
    assert fake_vllm.created[0].engine_args.enable_prefix_caching is True


async def test_a_first_request_reports_nothing_cached(fake_vllm: Any, model_dir: Path) -> None:
    backend = await _loaded(model_dir)
    chunks = await _collect(backend, "a", _prompt(_tokens("x" * 60)), OPTIONS)
    assert {(c.cached_tokens, c.cache_source) for c in chunks} == {(0, None)}


async def test_a_shared_prefix_is_reported_in_whole_blocks_on_the_first_chunk_only(
    fake_vllm: Any, model_dir: Path
) -> None:
    backend = await _loaded(model_dir)
    shared_text = "You are a careful assistant."
    await _collect(backend, "a", _prompt(_tokens(shared_text + " Say hi.")), OPTIONS)
    chunks = await _collect(backend, "b", _prompt(_tokens(shared_text + " Say bye.")), OPTIONS)
    first, rest = _first_and_rest(chunks)
    # BOS and "You are a careful assistant. Say " are shared: 34 tokens, 2 full blocks.
    assert first == (2 * BLOCK, "memory")
    assert rest == {(0, None)}


@pytest.mark.parametrize(("length", "cached"), [(33, 32), (32, 16), (16, 0), (17, 16)])
async def test_a_repeated_prompt_reuses_all_but_its_last_token_in_whole_blocks(
    fake_vllm: Any, model_dir: Path, length: int, cached: int
) -> None:
    # vLLM recomputes the last prompt token (it needs its logits), and caches
    # whole blocks only: a 32-token prompt reuses 16.
    backend = await _loaded(model_dir)
    ids = _tokens("y" * (length - 1))
    await _collect(backend, "a", _prompt(ids), OPTIONS)
    chunks = await _collect(backend, "b", _prompt(ids), OPTIONS)
    assert chunks[0].cached_tokens == cached
    assert chunks[0].cache_source == ("memory" if cached else None)


async def test_prefixes_that_differ_in_the_first_block_share_nothing(
    fake_vllm: Any, model_dir: Path
) -> None:
    backend = await _loaded(model_dir)
    await _collect(backend, "a", _prompt(_tokens("A" + "z" * 60)), OPTIONS)
    chunks = await _collect(backend, "b", _prompt(_tokens("B" + "z" * 60)), OPTIONS)
    assert chunks[0].cached_tokens == 0


async def test_the_count_rides_on_the_first_chunk_even_after_an_empty_output(
    fake_vllm: Any, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An output with neither text nor tokens yields no chunk; the count must
    # not be lost with it.
    from vllm.outputs import CompletionOutput, RequestOutput

    def output(text: str, ids: list[int], finish: str | None) -> RequestOutput:
        completion = CompletionOutput(0, text, ids, finish_reason=finish)
        return RequestOutput(
            "r1", [1], [completion], finished=finish is not None, num_cached_tokens=48
        )

    backend = await _loaded(model_dir)
    script = shared._scripted_generate(
        output("", [], None), output("ab", [4, 5], None), output("c", [6], "length")
    )
    monkeypatch.setattr(fake_vllm.created[0], "generate", script)
    chunks = await _collect(backend, "r1", _prompt([1] * 60), OPTIONS)
    assert [(c.text, c.cached_tokens, c.cache_source) for c in chunks] == [
        ("ab", 48, "memory"),
        ("c", 0, None),
    ]


async def test_the_fake_engine_caches_nothing_when_caching_is_off(
    fake_vllm: Any, model_dir: Path
) -> None:
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.inputs import TokensPrompt
    from vllm.sampling_params import SamplingParams

    engine = fake_vllm.from_engine_args(
        AsyncEngineArgs(model=str(model_dir), enable_prefix_caching=False)
    )
    prompt = TokensPrompt(prompt_token_ids=_tokens("w" * 40))

    async def cached(request_id: str) -> set[int | None]:
        outputs = engine.generate(prompt, SamplingParams(max_tokens=2), request_id)
        return {output.num_cached_tokens async for output in outputs}

    assert await cached("a") == await cached("b") == {0}


# --- through the HTTP app ------------------------------------------------------

MODEL = "smol-prefix"
SYSTEM = "You are kzero's test assistant. Answer in one short sentence, please."


def _service(backend: VllmBackend) -> GenerationService:
    lifecycle = Lifecycle(MODEL, drain_timeout_s=1.0)
    service = GenerationService(
        backend,
        backend_name="vllm",
        model_name=MODEL,
        limits=RequestLimits(max_tokens_cap=50),
        admission=Admission(max_running=4, max_queued=4),
        lifecycle=lifecycle,
    )
    lifecycle.mark_ready()
    return service


def _counters() -> tuple[float, float, float]:
    labels = (MODEL, "vllm")
    return (
        PROMPT_TOKENS.labels(*labels)._value.get(),
        PROMPT_TOKENS_CACHED.labels(*labels, "memory")._value.get(),
        PROMPT_TOKENS_COMPUTED.labels(*labels)._value.get(),
    )


def _chat(question: str, **extra: Any) -> dict[str, Any]:
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]
    return {"model": MODEL, "messages": messages, "max_tokens": 5, "temperature": 0, **extra}


async def test_a_cache_hit_reaches_usage_and_the_counters_through_http(
    fake_vllm: Any, model_dir: Path
) -> None:
    backend = await _loaded(model_dir, served_model_name=MODEL)
    first_ids = backend.render_chat(_chat("What is 2 + 2?")["messages"]).token_ids
    second_ids = backend.render_chat(_chat("And 3 + 3?")["messages"]).token_ids
    common = next(i for i, (a, b) in enumerate(zip(first_ids, second_ids, strict=False)) if a != b)
    expected = common // BLOCK * BLOCK
    assert expected >= 4 * BLOCK  # the system prompt spans several blocks
    app = kzero_app(_service(backend))
    before = _counters()
    async with client(app) as http:
        first = await http.post("/v1/chat/completions", json=_chat("What is 2 + 2?"))
        middle = _counters()
        second = await http.post(
            "/v1/chat/completions",
            json=_chat("And 3 + 3?", stream=True, stream_options={"include_usage": True}),
        )
    after = _counters()
    assert first.status_code == second.status_code == 200
    assert first.json()["usage"]["prompt_tokens_details"] == {"cached_tokens": 0}
    usage = sse_payloads(second.content)[-2]["usage"]
    assert usage["prompt_tokens"] == len(second_ids)
    assert usage["prompt_tokens_details"] == {"cached_tokens": expected}
    # prompt tokens = cached + computed, request by request
    assert [m - b for m, b in zip(middle, before, strict=True)] == [
        len(first_ids),
        0,
        len(first_ids),
    ]
    assert [a - m for a, m in zip(after, middle, strict=True)] == [
        len(second_ids),
        expected,
        len(second_ids) - expected,
    ]
