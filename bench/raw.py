"""Setup (a): llama-cpp-python called in-process, the floor kzero is measured against.

One ``Llama`` holds one context and cannot decode two requests at once, so a
batch of ``concurrency`` requests runs back to back; its TTFTs then include the
wait behind earlier requests, as a server's queue would.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from bench.samples import RequestSample
from bench.workload import Workload

if TYPE_CHECKING:
    from llama_cpp import Llama


class RawLlamaSetup:
    """A ``Llama`` in the bench process, loaded once and idle between its own batches."""

    key = "a"

    def __init__(self, workload: Workload) -> None:
        from llama_cpp import Llama

        self._llm: Llama | None = Llama(
            model_path=str(workload.model_path),
            n_ctx=workload.n_ctx,
            n_threads=workload.n_threads,
            n_threads_batch=workload.n_threads,
            n_batch=workload.n_batch,
            verbose=False,
        )

    def close(self) -> None:
        if self._llm is not None:
            self._llm.close()
            self._llm = None

    async def run_batch(
        self, prompts: Sequence[str], max_tokens: int
    ) -> tuple[float, list[RequestSample]]:
        # A worker thread keeps the event loop free; nothing else runs meanwhile.
        return await asyncio.to_thread(self._back_to_back, prompts, max_tokens)

    def _back_to_back(
        self, prompts: Sequence[str], max_tokens: int
    ) -> tuple[float, list[RequestSample]]:
        started = time.perf_counter()
        samples = [self._one(prompt, max_tokens, started) for prompt in prompts]
        return time.perf_counter() - started, samples

    def _one(self, prompt: str, max_tokens: int, started: float) -> RequestSample:
        assert self._llm is not None, "setup (a) used after close()"
        # kzero resets its context per request; without this the prompt-prefix
        # cache would give the raw setup an advantage the server never has.
        self._llm.reset()
        ttft_s: float | None = None
        text_chunks = 0
        finish_reason: str | None = None
        gaps_s: list[float] = []
        last_text_at = 0.0
        chunks = self._llm.create_completion(
            prompt, max_tokens=max_tokens, temperature=0, stream=True
        )
        for chunk in chunks:  # bounded: llama.cpp stops at max_tokens
            choice = chunk["choices"][0]
            if choice["text"]:
                now = time.perf_counter()
                text_chunks += 1
                if ttft_s is None:
                    ttft_s = now - started
                else:
                    gaps_s.append(now - last_text_at)
                last_text_at = now
            finish_reason = choice["finish_reason"] or finish_reason
        return RequestSample(
            ttft_s, text_chunks, text_chunks, finish_reason is not None, None, tuple(gaps_s)
        )
