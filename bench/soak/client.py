"""One streamed chat completion, read to its end or given up at its deadline."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import httpx

from bench.harness.sse import StreamTally, aevents


@dataclass
class RequestResult:
    """One streamed chat completion as the client saw it."""

    # "ok", "stuck", or an error kind: http_<status>, sse_error, missing_done,
    # missing_finish_reason, missing_usage, transport_<ExceptionName>, malformed_event.
    outcome: str
    latency_s: float
    ttft_s: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    detail: str = ""


async def stream_chat(
    client: httpx.AsyncClient, url: str, body: dict[str, Any], deadline_s: float
) -> RequestResult:
    """Send one request and read its SSE to the end, or give up at ``deadline_s`` ("stuck").

    Giving up closes the connection, which the server must see as a client that
    went away: it aborts the generation and counts the request as "aborted".
    """
    tally = StreamTally()
    error: tuple[str, str] | None = None
    try:
        async with (
            asyncio.timeout(deadline_s),
            client.stream("POST", url, json=body) as response,
        ):
            if response.status_code != 200:
                text = (await response.aread()).decode(errors="replace")
                error = (f"http_{response.status_code}", text[:200])
            else:
                async for event in aevents(response.aiter_lines()):
                    tally.add(event)
                    if tally.done:
                        break
    except TimeoutError:
        # Whether it was still queued or stalled mid-answer tells a slow queue
        # on a busy machine from a hung generation.
        progress = (
            f"{tally.content_events} content chunks, the first after {tally.ttft_s:.1f} s"
            if tally.ttft_s is not None
            else "no content yet (queued?)"
        )
        return RequestResult(
            "stuck",
            time.perf_counter() - tally.started,
            tally.ttft_s,
            detail=f"past its deadline; {progress}",
        )
    # An error event that came before the failure is the better explanation.
    except httpx.HTTPError as exc:
        error = _sse_error(tally) or (f"transport_{type(exc).__name__}", str(exc)[:200])
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        error = _sse_error(tally) or ("malformed_event", f"{type(exc).__name__}: {exc}"[:200])
    latency = time.perf_counter() - tally.started
    error = error or _incomplete(tally)
    if error is not None:
        return RequestResult(error[0], latency, tally.ttft_s, detail=error[1])
    assert tally.usage is not None
    return RequestResult(
        "ok",
        latency,
        tally.ttft_s,
        int(tally.usage["prompt_tokens"]),
        int(tally.usage["completion_tokens"]),
    )


def _sse_error(tally: StreamTally) -> tuple[str, str] | None:
    return None if tally.error is None else ("sse_error", str(tally.error)[:200])


def _incomplete(tally: StreamTally) -> tuple[str, str] | None:
    """The first thing a finished stream lacks, as (outcome, detail); None when whole."""
    if tally.error is not None:
        return _sse_error(tally)
    if not tally.done:
        return ("missing_done", "the stream ended without data: [DONE]")
    if tally.finish_reason is None:
        return ("missing_finish_reason", "no chunk carried a finish_reason")
    if tally.usage is None:
        return ("missing_usage", "include_usage was asked for but no usage chunk came")
    return None
