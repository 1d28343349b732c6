"""Setups (b), (c) and (d): streamed OpenAI text completions over HTTP.

Every server gets byte-for-byte the same request, and their Server-Sent Events
are read the same way, so any difference in the figures is the server's.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx

from predictor.bench.samples import RequestSample

# Each event is a "data:" line and a blank line; a few events carry no token
# (usage, [DONE]). Anything far beyond that is a misbehaving server.
LINES_PER_TOKEN_BOUND = 4
EXTRA_LINES = 64


@dataclass
class _StreamState:
    """What has arrived so far on one stream."""

    started: float
    ttft_s: float | None = None
    text_chunks: int = 0
    last_text_at: float | None = None
    gaps_s: list[float] = field(default_factory=list)
    usage_tokens: int | None = None
    finish_reason: str | None = None
    done: bool = False
    error: str | None = None

    def sample(self) -> RequestSample:
        tokens = self.usage_tokens if self.usage_tokens is not None else self.text_chunks
        completed = self.done and self.finish_reason is not None and self.error is None
        return RequestSample(
            self.ttft_s, tokens, self.text_chunks, completed, self.error, tuple(self.gaps_s)
        )

    def feed(self, payload: str) -> None:
        """Account for one ``data:`` payload."""
        if payload == "[DONE]":
            self.done = True
            return
        event = json.loads(payload)
        if "error" in event:
            self.error = str(event["error"].get("message", "error"))[:200]
            return
        usage = event.get("usage")
        if usage:
            self.usage_tokens = int(usage["completion_tokens"])
        choices = event.get("choices") or []
        if not choices:
            return
        if choices[0].get("text"):
            now = time.perf_counter()
            self.text_chunks += 1
            if self.ttft_s is None:
                self.ttft_s = now - self.started
            else:
                assert self.last_text_at is not None
                self.gaps_s.append(now - self.last_text_at)
            self.last_text_at = now
        if choices[0].get("finish_reason") is not None:
            self.finish_reason = choices[0]["finish_reason"]


class HttpCompletionSetup:
    """A server reached over loopback HTTP, sent ``concurrency`` streams at once."""

    def __init__(
        self,
        key: str,
        client: httpx.AsyncClient,
        *,
        base_url: str,
        model: str,
        batch_timeout_s: float,
    ) -> None:
        self.key = key
        self._client = client
        self._url = f"{base_url}/v1/completions"
        self._model = model
        self._batch_timeout_s = batch_timeout_s

    async def run_batch(
        self, prompts: Sequence[str], max_tokens: int
    ) -> tuple[float, list[RequestSample]]:
        """Send every prompt at once; wall time runs until the last stream ends."""
        started = time.perf_counter()
        streams = [self._stream(prompt, max_tokens, started) for prompt in prompts]
        samples = await asyncio.wait_for(asyncio.gather(*streams), self._batch_timeout_s)
        return time.perf_counter() - started, list(samples)

    async def _stream(self, prompt: str, max_tokens: int, started: float) -> RequestSample:
        body = {
            "model": self._model,
            "prompt": prompt,
            "max_tokens": max_tokens,
            "temperature": 0,
            "stream": True,
            # Exact token counts where the server supports it; otherwise text chunks count.
            "stream_options": {"include_usage": True},
            # Not OpenAI: llama_cpp.server defaults to 1.1, which changes the greedy
            # tokens; 1.0 (off) is what (a), kzero and llama-server use. kzero ignores it.
            "repeat_penalty": 1.0,
            # Not OpenAI: llama-server would reuse the KV of the slot's previous
            # prompt (it also runs with --no-cache-prompt). The others ignore it.
            "cache_prompt": False,
        }
        state = _StreamState(started=started)
        try:
            async with self._client.stream("POST", self._url, json=body) as response:
                if response.status_code != 200:
                    await response.aread()
                    state.error = f"HTTP {response.status_code}"
                    return state.sample()
                await self._read_events(response, state, max_tokens)
        except httpx.HTTPError as exc:
            state.error = f"{type(exc).__name__}: {exc}"[:200]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            state.error = f"malformed event: {exc}"[:200]
        return state.sample()

    @staticmethod
    async def _read_events(response: httpx.Response, state: _StreamState, max_tokens: int) -> None:
        line_budget = LINES_PER_TOKEN_BOUND * max_tokens + EXTRA_LINES
        async for line in response.aiter_lines():
            line_budget -= 1
            if line_budget < 0:
                state.error = "stream exceeded its line budget"
                return
            if line.startswith("data:"):
                state.feed(line[len("data:") :].strip())
                if state.done:
                    return
