"""Turns validated OpenAI requests into generations and shapes the responses.

Non-streaming requests return one JSON body; streaming ones are Server-Sent
Events (``data: {...}\\n\\n``) ending with ``data: [DONE]``, in the chunk
shapes the official ``openai`` client parses.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from typing import Any

import orjson

from predictor.admission import Ticket
from predictor.backends.base import Prompt, SamplingOptions
from predictor.generation import Completion, GenerationService, new_completion
from predictor.openai.errors import InternalError, ModelNotFound, OpenAIError
from predictor.openai.protocol import ChatCompletionRequest, CompletionRequest

logger = logging.getLogger(__name__)

# Builds one streamed choice from (text, finish_reason): chat and text
# completions differ only in this shape.
ChoiceBuilder = Callable[[str, str | None], dict[str, Any]]


def sse_event(payload: dict[str, Any] | str) -> bytes:
    data = payload.encode() if isinstance(payload, str) else orjson.dumps(payload)
    return b"data: " + data + b"\n\n"


def usage_body(completion: Completion) -> dict[str, int]:
    return {
        "prompt_tokens": completion.prompt_tokens,
        "completion_tokens": completion.completion_tokens,
        "total_tokens": completion.prompt_tokens + completion.completion_tokens,
    }


class PreparedRequest:
    """A request that passed every check and was admitted: what to run and how to answer.

    Whoever answers it must call ``release`` when the response is over, even if
    generation never started (a client can leave before the first byte).
    """

    def __init__(
        self,
        prompt: Prompt,
        options: SamplingOptions,
        stream: bool,
        include_usage: bool,
        ticket: Ticket,
    ) -> None:
        self.prompt = prompt
        self.options = options
        self.stream = stream
        self.include_usage = include_usage
        self.ticket = ticket
        self.completion = new_completion(prompt)
        self.created = int(time.time())

    def release(self) -> None:
        self.ticket.release()


class OpenAIServing:
    """Chat and text completions on top of one ``GenerationService``."""

    def __init__(self, service: GenerationService) -> None:
        self.service = service

    def check_model(self, requested: str) -> None:
        if requested != self.service.model_name:
            raise ModelNotFound(requested)

    async def prepare_chat(self, request: ChatCompletionRequest) -> PreparedRequest:
        self.check_model(request.model)
        self.service.require_ready()
        prompt = await self.service.chat_prompt(request.message_dicts())
        options = self.service.sampling_options(prompt, request.generation_params())
        return PreparedRequest(
            prompt, options, request.stream, request.include_usage, self.service.admit()
        )

    async def prepare_completion(self, request: CompletionRequest) -> PreparedRequest:
        self.check_model(request.model)
        self.service.require_ready()
        prompt = await self.service.text_prompt(request.prompt_text())
        options = self.service.sampling_options(
            prompt, request.generation_params(), prompt_field="prompt"
        )
        return PreparedRequest(
            prompt, options, request.stream, request.include_usage, self.service.admit()
        )

    async def chat_body(self, prepared: PreparedRequest) -> dict[str, Any]:
        text = await self._run(prepared)
        return {
            "id": f"chatcmpl-{prepared.completion.request_id}",
            "object": "chat.completion",
            "created": prepared.created,
            "model": self.service.model_name,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "logprobs": None,
                    "finish_reason": prepared.completion.finish_reason,
                }
            ],
            "usage": usage_body(prepared.completion),
        }

    async def completion_body(self, prepared: PreparedRequest) -> dict[str, Any]:
        text = await self._run(prepared)
        return {
            "id": f"cmpl-{prepared.completion.request_id}",
            "object": "text_completion",
            "created": prepared.created,
            "model": self.service.model_name,
            "choices": [
                {
                    "index": 0,
                    "text": text,
                    "logprobs": None,
                    "finish_reason": prepared.completion.finish_reason,
                }
            ],
            "usage": usage_body(prepared.completion),
        }

    async def _run(self, prepared: PreparedRequest) -> str:
        try:
            return await self.service.complete(
                prepared.prompt, prepared.options, prepared.completion, prepared.ticket
            )
        except OpenAIError:
            raise
        except Exception as exc:
            logger.exception("generation failed for request %s", prepared.completion.request_id)
            raise InternalError("the engine failed while generating; see server logs") from exc

    def chat_stream(self, prepared: PreparedRequest) -> AsyncIterator[bytes]:
        def choice(text: str, finish_reason: str | None) -> dict[str, Any]:
            delta = {"content": text} if text else {}
            return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}

        first = {
            "index": 0,
            "delta": {"role": "assistant", "content": ""},
            "logprobs": None,
            "finish_reason": None,
        }
        return self._sse(prepared, "chatcmpl", "chat.completion.chunk", choice, first)

    def completion_stream(self, prepared: PreparedRequest) -> AsyncIterator[bytes]:
        def choice(text: str, finish_reason: str | None) -> dict[str, Any]:
            return {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}

        return self._sse(prepared, "cmpl", "text_completion", choice, None)

    async def _sse(
        self,
        prepared: PreparedRequest,
        id_prefix: str,
        object_name: str,
        choice: ChoiceBuilder,
        first_choice: dict[str, Any] | None,
    ) -> AsyncIterator[bytes]:
        completion = prepared.completion
        base = {
            "id": f"{id_prefix}-{completion.request_id}",
            "object": object_name,
            "created": prepared.created,
            "model": self.service.model_name,
        }
        # With include_usage, OpenAI sends "usage": null on every chunk but the last.
        usage_field: dict[str, Any] = {"usage": None} if prepared.include_usage else {}

        def chunk(choices: list[dict[str, Any]]) -> bytes:
            return sse_event({**base, "choices": choices, **usage_field})

        if first_choice is not None:
            yield chunk([first_choice])
        try:
            deltas = self.service.stream(
                prepared.prompt, prepared.options, completion, prepared.ticket
            )
            async with aclosing(deltas):
                async for delta in deltas:
                    yield chunk([choice(delta.text, delta.finish_reason)])
        except OpenAIError as exc:
            # Headers are sent already: report in-band, as vLLM does, then end.
            yield sse_event(exc.body())
        except Exception:
            logger.exception("generation failed for request %s", completion.request_id)
            yield sse_event(InternalError("the engine failed while generating").body())
        else:
            if prepared.include_usage:
                yield sse_event({**base, "choices": [], "usage": usage_body(completion)})
        yield sse_event("[DONE]")
