"""Shapes the OpenAI responses of prepared generations.

Non-streaming requests return one JSON body; streaming ones are Server-Sent
Events (``data: {...}\\n\\n``) ending with ``data: [DONE]``, in the chunk
shapes the official ``openai`` client parses. A stream that fails after its
first byte reports the error in-band, then ``[DONE]``, as vLLM does.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from predictor.errors import ServingError
from predictor.generation import Prepared
from predictor.openai.errors import error_body


def sse_event(payload: dict[str, Any] | str) -> bytes:
    data = payload.encode() if isinstance(payload, str) else orjson.dumps(payload)
    return b"data: " + data + b"\n\n"


@dataclass
class OpenAICall:
    """One admitted OpenAI request: the generation, and how the client wants its answer."""

    kind: Literal["chat", "text"]
    model_name: str
    prepared: Prepared
    include_usage: bool
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def id(self) -> str:
        prefix = "chatcmpl" if self.kind == "chat" else "cmpl"
        return f"{prefix}-{self.prepared.completion.request_id}"

    @property
    def object_name(self) -> str:
        return "chat.completion" if self.kind == "chat" else "text_completion"


def _choice(call: OpenAICall, text: str, finish_reason: str | None) -> dict[str, Any]:
    if call.kind == "chat":
        return {
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "logprobs": None,
            "finish_reason": finish_reason,
        }
    return {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}


def _delta_choice(call: OpenAICall, text: str, finish_reason: str | None) -> dict[str, Any]:
    if call.kind == "chat":
        delta = {"content": text} if text else {}
        return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
    return {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}


async def response_body(call: OpenAICall) -> dict[str, Any]:
    """Run the request to the end; the whole JSON answer. Raises ``ServingError``."""
    text = await call.prepared.text()
    completion = call.prepared.completion
    return {
        "id": call.id,
        "object": call.object_name,
        "created": call.created,
        "model": call.model_name,
        "choices": [_choice(call, text, completion.finish_reason)],
        "usage": completion.usage(),
    }


async def event_stream(call: OpenAICall) -> AsyncIterator[bytes]:
    """The answer as Server-Sent Events; failures after the first byte are in-band."""
    completion = call.prepared.completion
    base = {
        "id": call.id,
        "object": f"{call.object_name}.chunk" if call.kind == "chat" else call.object_name,
        "created": call.created,
        "model": call.model_name,
    }
    # With include_usage, OpenAI sends "usage": null on every chunk but the last.
    usage_field: dict[str, Any] = {"usage": None} if call.include_usage else {}

    def chunk(choices: list[dict[str, Any]]) -> bytes:
        return sse_event({**base, "choices": choices, **usage_field})

    if call.kind == "chat":
        # The chat API opens with the assistant's role and no content.
        opener = {"role": "assistant", "content": ""}
        yield chunk([{"index": 0, "delta": opener, "logprobs": None, "finish_reason": None}])
    try:
        async with aclosing(call.prepared.stream()) as deltas:
            async for delta in deltas:
                yield chunk([_delta_choice(call, delta.text, delta.finish_reason)])
    except ServingError as error:
        # Headers are sent already: report in-band, as vLLM does, then end.
        yield sse_event(error_body(error))
    else:
        if call.include_usage:
            yield sse_event({**base, "choices": [], "usage": completion.usage()})
    yield sse_event("[DONE]")
