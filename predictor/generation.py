"""The engine-agnostic generation service between the HTTP layers and a backend.

Both the OpenAI router and KServe's v1 ``:predict`` go through here, so context
checks, limits, request ids and metrics are the same whichever door a request
came in by and whichever engine serves it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

from predictor.backends.base import (
    Backend,
    FinishReason,
    Prompt,
    RequestAborted,
    SamplingOptions,
)
from predictor.backends.chat_template import ChatTemplateError
from predictor.metrics import RequestRecorder, record_rejected_request
from predictor.openai.errors import (
    ContextLengthExceeded,
    InvalidRequest,
    ModelNotReady,
)


@dataclass(frozen=True)
class GenerationParams:
    """What a client asked for, before it is checked against the model and limits."""

    max_tokens: int | None
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()


@dataclass
class Completion:
    """A finished (or, while streaming, growing) generation."""

    request_id: str
    prompt_tokens: int
    completion_tokens: int = 0
    finish_reason: FinishReason | None = None


@dataclass(frozen=True)
class Delta:
    text: str
    finish_reason: FinishReason | None


class GenerationService:
    """Validates requests against the loaded model, runs them, records metrics."""

    def __init__(
        self, backend: Backend, *, backend_name: str, model_name: str, max_tokens_cap: int
    ) -> None:
        self.backend = backend
        self.backend_name = backend_name
        self.model_name = model_name
        self.max_tokens_cap = max_tokens_cap
        self._ready = False

    def mark_ready(self) -> None:
        """Called once the model is loaded and warmed up."""
        self._ready = True

    def mark_not_ready(self) -> None:
        """Called when the server is stopping: new requests get 503."""
        self._ready = False

    def require_ready(self) -> None:
        if not self._ready:
            raise ModelNotReady(self.model_name)

    def record_rejected(self, status_code: int) -> None:
        """Count a generation request refused before it reached the engine."""
        record_rejected_request(
            self.model_name, self.backend_name, "invalid" if status_code < 500 else "error"
        )

    async def chat_prompt(self, messages: list[dict[str, str]]) -> Prompt:
        """Render and tokenize a conversation off the event loop."""
        self.require_ready()
        try:
            return await asyncio.to_thread(self.backend.render_chat, messages)
        except ChatTemplateError as exc:
            raise InvalidRequest(str(exc), param="messages") from exc

    async def text_prompt(self, text: str) -> Prompt:
        self.require_ready()
        ids = await asyncio.to_thread(self.backend.tokenize, text)
        return Prompt(text=text, token_ids=ids)

    def sampling_options(self, prompt: Prompt, params: GenerationParams) -> SamplingOptions:
        """Resolve max_tokens against the context window and the configured cap.

        Like the OpenAI API: a prompt that leaves no room, or an explicit
        max_tokens that does not fit, is ``context_length_exceeded``.
        """
        context = self.backend.info.context_length
        prompt_tokens = len(prompt.token_ids)
        if params.max_tokens is not None and params.max_tokens > self.max_tokens_cap:
            raise InvalidRequest(
                f"max_tokens is {params.max_tokens}, above this server's limit of "
                f"{self.max_tokens_cap}",
                param="max_tokens",
            )
        room = context - prompt_tokens
        if room < 1 or (params.max_tokens is not None and params.max_tokens > room):
            asked = params.max_tokens if params.max_tokens is not None else 1
            raise ContextLengthExceeded(
                f"This model's maximum context length is {context} tokens. However, you "
                f"requested {prompt_tokens + asked} tokens ({prompt_tokens} in the prompt, "
                f"{asked} for the completion). Please reduce the prompt or max_tokens."
            )
        if params.max_tokens is None:
            max_tokens = min(room, self.max_tokens_cap)
        else:
            max_tokens = params.max_tokens
        return SamplingOptions(
            max_tokens=max_tokens,
            temperature=params.temperature,
            top_p=params.top_p,
            seed=params.seed,
            stop=params.stop,
        )

    async def stream(
        self, prompt: Prompt, options: SamplingOptions, completion: Completion
    ) -> AsyncIterator[Delta]:
        """Run one request, yielding text deltas and updating ``completion`` as tokens arrive.

        Closing this iterator early (the client went away) aborts the request in
        the engine before its next token.
        """
        recorder = RequestRecorder(self.model_name, self.backend_name)
        status = "error"
        chunks = self.backend.generate(
            completion.request_id, prompt, options, on_start=recorder.started
        )
        try:
            async for chunk in chunks:
                recorder.tokens(chunk.num_tokens)
                completion.completion_tokens += chunk.num_tokens
                if chunk.finish_reason is not None:
                    completion.finish_reason = chunk.finish_reason
                if chunk.text or chunk.finish_reason is not None:
                    yield Delta(chunk.text, chunk.finish_reason)
            status = "ok"
        except RequestAborted:
            # abort() from the HTTP layer: the client is gone, end quietly.
            status = "aborted"
        except (GeneratorExit, asyncio.CancelledError):
            status = "aborted"
            raise
        finally:
            # An abandoned async generator is only closed by the garbage
            # collector; close the engine's stream now so decoding stops.
            await chunks.aclose()
            recorder.finish(status, completion.prompt_tokens)

    async def abort(self, completion: Completion) -> None:
        """Stop a request whose client went away; its stream ends before the next token."""
        await self.backend.abort(completion.request_id)

    async def complete(
        self, prompt: Prompt, options: SamplingOptions, completion: Completion
    ) -> str:
        """Run one request to the end; returns the whole text."""
        return "".join([delta.text async for delta in self.stream(prompt, options, completion)])


def new_completion(prompt: Prompt) -> Completion:
    return Completion(request_id=uuid.uuid4().hex, prompt_tokens=len(prompt.token_ids))
