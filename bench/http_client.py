"""Setups (b), (c) and (d): streamed OpenAI text completions over HTTP.

Every server gets byte-for-byte the same request, and their Server-Sent Events
are read the same way (bench/harness/sse.py), so any difference in the figures
is the server's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import httpx

from bench.harness.sse import StreamTally, aevents
from bench.samples import RequestSample

# One event per token, and a few that carry none (a role, usage, [DONE]).
# Anything far beyond that is a misbehaving server.
EVENTS_PER_TOKEN_BOUND = 2
EXTRA_EVENTS = 32


def _sample(tally: StreamTally, transport_error: str | None = None) -> RequestSample:
    """Tokens from the server's usage where it reports one, else text events."""
    usage_tokens = int(tally.usage["completion_tokens"]) if tally.usage else None
    error = transport_error
    if error is None and tally.error is not None:
        error = str(tally.error.get("message", "error"))[:200]
    return RequestSample(
        tally.ttft_s,
        usage_tokens if usage_tokens is not None else tally.content_events,
        tally.content_events,
        tally.complete and error is None,
        error,
        tuple(tally.gaps_s),
    )


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
        # TTFT counts from the moment the whole batch was sent.
        tally = StreamTally(started=started)
        try:
            async with self._client.stream("POST", self._url, json=body) as response:
                if response.status_code != 200:
                    await response.aread()
                    return _sample(tally, f"HTTP {response.status_code}")
                return _sample(tally, await _read_events(response, tally, max_tokens))
        except httpx.HTTPError as exc:
            return _sample(tally, f"{type(exc).__name__}: {exc}"[:200])
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            return _sample(tally, f"malformed event: {exc}"[:200])


async def _read_events(response: httpx.Response, tally: StreamTally, max_tokens: int) -> str | None:
    """Read to ``[DONE]``; an error when the stream runs past its event budget."""
    budget = EVENTS_PER_TOKEN_BOUND * max_tokens + EXTRA_EVENTS
    async for event in aevents(response.aiter_lines()):
        tally.add(event)
        if tally.done:
            return None
        if len(tally.events) > budget:
            return "stream exceeded its event budget"
    return None
