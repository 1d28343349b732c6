"""Concurrent streams all complete, each exactly as it would alone."""

from __future__ import annotations

import asyncio

import openai
import pytest

from bench.harness.process import PredictorProcess

from .conftest import MODEL_NAME

pytestmark = pytest.mark.integration

PROMPTS = [
    "Write a short poem about the sea.",
    "List three fruits.",
    "Explain what a CPU does.",
    "Tell me a fact about the moon.",
]


async def streamed_answer(client: openai.AsyncOpenAI, prompt: str) -> tuple[str, str | None]:
    stream = await client.chat.completions.create(
        model=MODEL_NAME,
        messages=[{"role": "user", "content": prompt}],
        max_tokens=48,
        temperature=0,
        stream=True,
    )
    text, finish = [], None
    async for chunk in stream:
        text.append(chunk.choices[0].delta.content or "")
        finish = chunk.choices[0].finish_reason or finish
    return "".join(text), finish


async def test_four_concurrent_streams_match_their_solo_runs(predictor: PredictorProcess):
    client = openai.AsyncOpenAI(
        base_url=f"{predictor.url}/v1", api_key="x", max_retries=0, timeout=300
    )
    solo = [await streamed_answer(client, prompt) for prompt in PROMPTS]
    together = await asyncio.gather(*(streamed_answer(client, prompt) for prompt in PROMPTS))
    for prompt, alone, concurrent in zip(PROMPTS, solo, together, strict=True):
        assert concurrent == alone, prompt
        assert concurrent[1] in ("stop", "length")
