"""Continuous batching: concurrent requests decode together, each exactly as it would alone.

At temperature 0 every stream must equal its solo run on the same server, and
the solo runs must equal llama-cpp-python's own unbatched greedy generation.
Requests join mid-decode with prompts long enough to be prefilled in chunks
next to running streams, and leave at different times.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator

import httpx
import pytest

from bench.harness.process import PredictorProcess
from bench.harness.sse import aevents, content
from predictor.default_model import default_model_path

pytestmark = pytest.mark.integration

NAME = "batched"
MAX_TOKENS = 24
PROMPTS = [
    "The capital of France is",
    "1, 2, 3, 4, 5,",
    # Longer than a prefill chunk next to running streams (128 tokens).
    "Once upon a time, " + "a fox walked through the quiet forest and " * 30 + "then",
    "def fibonacci(n):",
    "The three primary colours are",
    "Water boils at",
]


@pytest.fixture(scope="module")
def batched() -> Iterator[PredictorProcess]:
    server = PredictorProcess(["--model_name", NAME, "--max_running_requests", "4"])
    try:
        server.wait_ready(NAME)
        yield server
    finally:
        server.stop()


async def stream(
    client: httpx.AsyncClient, prompt: str, max_tokens: int
) -> tuple[str, float, float]:
    """The streamed text, and when its first and last tokens arrived."""
    body = {
        "model": NAME,
        "prompt": prompt,
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
    }
    parts: list[str] = []
    first = last = 0.0
    async with client.stream("POST", "/v1/completions", json=body) as response:
        assert response.status_code == 200
        async for event in aevents(response.aiter_lines()):
            if text := content(event):
                last = time.perf_counter()
                first = first or last
                parts.append(text)
    return "".join(parts), first, last


def reference_greedy(prompt: str, max_tokens: int) -> str:
    """llama-cpp-python's own one-sequence greedy generation: the unbatched path."""
    from llama_cpp import Llama

    llm = Llama(model_path=str(default_model_path()), n_ctx=1024, n_threads=2, verbose=False)
    try:
        out: list[int] = []
        tokens = llm.tokenize(prompt.encode(), add_bos=True, special=True)
        for token in llm.generate(tokens, top_k=1, temp=0.0, repeat_penalty=1.0):
            if llm.token_eos() == token or len(out) == max_tokens:
                break
            out.append(token)
            if len(out) == max_tokens:
                break
        return llm.detokenize(out).decode("utf-8", errors="replace")
    finally:
        llm.close()


async def test_concurrent_streams_join_and_leave_and_match_their_solo_runs(
    batched: PredictorProcess,
):
    async with httpx.AsyncClient(base_url=batched.url, timeout=300) as client:
        # Different lengths, so requests leave at different steps.
        lengths = [MAX_TOKENS - 4 * (index % 3) for index in range(len(PROMPTS))]
        solo = [await stream(client, p, n) for p, n in zip(PROMPTS, lengths, strict=True)]

        async def staggered(index: int) -> tuple[str, float, float]:
            await asyncio.sleep(0.15 * index)  # join while others decode
            return await stream(client, PROMPTS[index], lengths[index])

        together = await asyncio.gather(*(staggered(i) for i in range(len(PROMPTS))))

    for prompt, alone, concurrent in zip(PROMPTS, solo, together, strict=True):
        assert concurrent[0] == alone[0], prompt[:40]
    # Decoded together, not one after another: token windows overlap.
    windows = sorted((first, last) for _, first, last in together)
    overlapping = sum(1 for a, b in itertools.pairwise(windows) if b[0] < a[1])
    assert overlapping >= 2, windows


def test_solo_runs_match_llama_cpp_pythons_unbatched_greedy(batched: PredictorProcess):
    for prompt in PROMPTS[:3]:
        response = httpx.post(
            f"{batched.url}/v1/completions",
            json={"model": NAME, "prompt": prompt, "max_tokens": MAX_TOKENS, "temperature": 0},
            timeout=300,
        )
        assert response.json()["choices"][0]["text"] == reference_greedy(prompt, MAX_TOKENS)
