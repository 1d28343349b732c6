"""The engine-agnostic generation service between the HTTP layers and a backend.

Both the OpenAI router and KServe's v1 ``:predict`` go through here, so context
checks, limits, request ids and metrics are the same whichever door a request
came in by and whichever engine serves it.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from predictor.admission import Admission, Ticket
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
    EngineDead,
    InvalidRequest,
    ModelNotReady,
    OpenAIError,
    RequestTimeout,
    ShuttingDown,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RequestLimits:
    """Per-request bounds from the settings; each violation is a 400 naming the field."""

    max_tokens_cap: int
    max_prompt_tokens: int | None = None
    max_stop_sequences: int = 4
    max_stop_length: int = 128
    request_timeout_s: float = 300.0


def outcome_of(status_code: int) -> str:
    """The ``kzero_requests_total`` status of a request refused with ``status_code``.

    429 and 503 say "not now" and clients retry them; alerting on them as errors
    would page on every cold start and every scale-down.
    """
    if status_code in (429, 503):
        return "rejected"
    return "invalid" if status_code < 500 else "error"


class ServingState(enum.Enum):
    """Where the service is in its life; only READY accepts requests."""

    LOADING = "loading"
    READY = "ready"
    DRAINING = "draining"
    FAILED = "failed"


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
        self,
        backend: Backend | None,
        *,
        backend_name: str,
        model_name: str,
        limits: RequestLimits,
        admission: Admission,
    ) -> None:
        # None until the model's files are fetched (see model_source): the
        # service exists from the start, so the port can open first.
        self._backend = backend
        self.backend_name = backend_name
        self.model_name = model_name
        self.limits = limits
        self.admission = admission
        self.state = ServingState.LOADING
        # Set by the model: told once when the engine turns out to be dead.
        self.on_engine_failure: Callable[[BaseException], None] | None = None
        # Request id -> nothing: the requests the engine holds, for cut_off().
        self._active: dict[str, None] = {}
        # Once set, every request still in flight ends with the error this makes.
        self._cut_off_with: Callable[[], OpenAIError] | None = None

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            raise ModelNotReady(self.model_name)
        return self._backend

    @backend.setter
    def backend(self, backend: Backend) -> None:
        self._backend = backend

    def mark_ready(self) -> None:
        """Called once the model is loaded and warmed up (unless stopping began meanwhile)."""
        if self.state is ServingState.LOADING:
            self.state = ServingState.READY

    def begin_drain(self) -> None:
        """SIGTERM: new requests get 503 from now on; admitted ones run to the end."""
        if self.state is not ServingState.FAILED:
            self.state = ServingState.DRAINING

    def mark_failed(self) -> None:
        self.state = ServingState.FAILED

    async def cut_off(self, error: Callable[[], OpenAIError]) -> None:
        """End every admitted request now with ``error()`` (drain deadline, dead engine).

        A request cut off mid-stream must not look finished: a 200 with half an
        answer is silent corruption, so it ends with this error instead.
        """
        self._cut_off_with = error
        for request_id in list(self._active):
            await self.backend.abort(request_id)

    def require_ready(self) -> None:
        if self.state is ServingState.READY:
            return
        if self.state is ServingState.DRAINING:
            raise ShuttingDown()
        if self.state is ServingState.FAILED:
            raise EngineDead()
        raise ModelNotReady(self.model_name)

    def admit(self) -> Ticket:
        """Reserve a place for a validated request (429 when full): the last check before it runs."""
        self.require_ready()
        return self.admission.admit()

    def record_rejected(self, status_code: int) -> None:
        """Count a generation request refused before it reached the engine."""
        record_rejected_request(self.model_name, self.backend_name, outcome_of(status_code))

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
        if not ids:
            # Nothing to condition on: the engine would be asked to decode an empty batch.
            raise InvalidRequest("prompt must not be empty", param="prompt")
        return Prompt(text=text, token_ids=ids)

    def sampling_options(
        self, prompt: Prompt, params: GenerationParams, *, prompt_field: str = "messages"
    ) -> SamplingOptions:
        """Check the request against the limits; resolve max_tokens against the context window.

        Like the OpenAI API: a prompt that leaves no room, or an explicit
        max_tokens that does not fit, is ``context_length_exceeded``.
        """
        limits = self.limits
        context = self.backend.info.context_length
        prompt_tokens = len(prompt.token_ids)
        self._check_stop(params.stop)
        if limits.max_prompt_tokens is not None and prompt_tokens > limits.max_prompt_tokens:
            raise InvalidRequest(
                f"the prompt is {prompt_tokens} tokens, above this server's limit of "
                f"{limits.max_prompt_tokens}",
                param=prompt_field,
            )
        if params.max_tokens is not None and params.max_tokens > limits.max_tokens_cap:
            raise InvalidRequest(
                f"max_tokens is {params.max_tokens}, above this server's limit of "
                f"{limits.max_tokens_cap}",
                param="max_tokens",
            )
        room = context - prompt_tokens
        if room < 1 or (params.max_tokens is not None and params.max_tokens > room):
            asked = params.max_tokens if params.max_tokens is not None else 1
            raise ContextLengthExceeded(
                f"This model's maximum context length is {context} tokens. However, you "
                f"requested {prompt_tokens + asked} tokens ({prompt_tokens} in the prompt, "
                f"{asked} for the completion). Please reduce the prompt or max_tokens.",
                param=prompt_field,
            )
        if params.max_tokens is None:
            max_tokens = min(room, limits.max_tokens_cap)
        else:
            max_tokens = params.max_tokens
        return SamplingOptions(
            max_tokens=max_tokens,
            temperature=params.temperature,
            top_p=params.top_p,
            seed=params.seed,
            stop=params.stop,
        )

    def _check_stop(self, stop: tuple[str, ...]) -> None:
        limits = self.limits
        if len(stop) > limits.max_stop_sequences:
            raise InvalidRequest(
                f"{len(stop)} stop sequences given; this server allows at most "
                f"{limits.max_stop_sequences}",
                param="stop",
            )
        if any(len(sequence) > limits.max_stop_length for sequence in stop):
            raise InvalidRequest(
                f"a stop sequence is longer than this server's limit of "
                f"{limits.max_stop_length} characters",
                param="stop",
            )
        if any(not sequence for sequence in stop):
            raise InvalidRequest("stop sequences must not be empty", param="stop")

    async def stream(
        self, prompt: Prompt, options: SamplingOptions, completion: Completion, ticket: Ticket
    ) -> AsyncIterator[Delta]:
        """Run one admitted request, yielding text deltas and updating ``completion``.

        Closing this iterator early (the client went away) aborts the request in
        the engine before its next token. The request's deadline counts from
        here, queueing included: past it the engine aborts the request and this
        raises ``RequestTimeout``. The ticket is released on every way out.
        """
        recorder = RequestRecorder(self.model_name, self.backend_name)
        status = "error"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.limits.request_timeout_s
        timed_out = False
        expiry: asyncio.Task[None] | None = None

        def expire() -> None:
            nonlocal timed_out, expiry
            timed_out = True
            expiry = loop.create_task(self.backend.abort(completion.request_id))

        timer = loop.call_at(deadline, expire)
        chunks = self.backend.generate(
            completion.request_id, prompt, options, on_start=recorder.started
        )
        try:
            try:
                await asyncio.wait_for(ticket.run_slot(), deadline - loop.time())
            except TimeoutError:
                raise RequestTimeout(self.limits.request_timeout_s) from None
            if self._cut_off_with is not None:
                raise self._cut_off_with()
            self._active[completion.request_id] = None
            async for chunk in chunks:
                recorder.tokens(chunk.num_tokens)
                completion.completion_tokens += chunk.num_tokens
                if chunk.finish_reason is not None:
                    completion.finish_reason = chunk.finish_reason
                if chunk.text or chunk.finish_reason is not None:
                    yield Delta(chunk.text, chunk.finish_reason)
            status = "ok"
        except RequestAborted:
            if timed_out:
                raise RequestTimeout(self.limits.request_timeout_s) from None
            if self._cut_off_with is not None:
                raise self._cut_off_with() from None
            # abort() from the HTTP layer: the client is gone, end quietly.
            status = "aborted"
        except (GeneratorExit, asyncio.CancelledError):
            status = "aborted"
            raise
        except Exception as exc:
            await self._check_engine(exc)
            raise
        finally:
            timer.cancel()
            self._active.pop(completion.request_id, None)
            # An abandoned async generator is only closed by the garbage
            # collector; close the engine's stream now so decoding stops.
            await chunks.aclose()
            ticket.release()
            recorder.finish(status, completion.prompt_tokens)

    async def _check_engine(self, error: BaseException) -> None:
        """After a failed request: if the engine itself is gone, say so once."""
        if self.state is ServingState.FAILED or await self.backend.healthy():
            return
        self.mark_failed()
        if self.on_engine_failure is not None:
            self.on_engine_failure(error)

    async def abort(self, completion: Completion) -> None:
        """Stop a request whose client went away; its stream ends before the next token."""
        await self.backend.abort(completion.request_id)

    async def complete(
        self, prompt: Prompt, options: SamplingOptions, completion: Completion, ticket: Ticket
    ) -> str:
        """Run one admitted request to the end; returns the whole text."""
        deltas = self.stream(prompt, options, completion, ticket)
        return "".join([delta.text async for delta in deltas])


def new_completion(prompt: Prompt) -> Completion:
    return Completion(request_id=uuid.uuid4().hex, prompt_tokens=len(prompt.token_ids))
