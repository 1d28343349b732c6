"""The engine-agnostic generation service between the doors and a backend.

Both doors, the OpenAI routes and KServe's v1 ``:predict``, do the same two
things: ``prepare`` a request (readiness, prompt rendering, limits, admission,
and the count of every refusal), then run the ``Prepared`` request it returns,
streaming or not. So checks, request ids and metrics are the same whichever
door a request came in by and whichever engine serves it. Nothing here knows
HTTP: failures are ``predictor.errors`` classes, and each door maps them.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from predictor.admission import Admission, Ticket
from predictor.backends.base import (
    Backend,
    FinishReason,
    Prompt,
    RequestAborted,
    SamplingOptions,
)
from predictor.backends.chat_template import ChatTemplateError
from predictor.errors import (
    ContextTooLong,
    GenerationFailed,
    InvalidParam,
    NotReady,
    RequestTimedOut,
    ServingError,
    UnknownModel,
)
from predictor.lifecycle import Lifecycle
from predictor.metrics import RequestRecorder, record_rejected_request

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RequestLimits:
    """Per-request bounds from the settings; each violation is an ``InvalidParam`` naming the field."""

    max_tokens_cap: int
    max_prompt_tokens: int | None = None
    max_stop_sequences: int = 4
    max_stop_length: int = 128
    request_timeout_s: float = 300.0


@dataclass(frozen=True)
class ChatInput:
    """A conversation, rendered with the model's chat template."""

    messages: list[dict[str, str]]
    field = "messages"


@dataclass(frozen=True)
class TextInput:
    """A raw completion prompt."""

    text: str
    field = "prompt"


GenerationInput = ChatInput | TextInput


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
    # Prompt tokens the engine reused from its prefix cache instead of computing.
    cached_tokens: int = 0

    def usage(self) -> dict[str, Any]:
        """Token counts in the OpenAI ``usage`` shape, which KServe's door reuses."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens},
        }


@dataclass(frozen=True)
class Delta:
    text: str
    finish_reason: FinishReason | None


class Prepared:
    """A request that passed every check and holds an admission place.

    It is the one owner of that place: ``close`` gives it back, exactly once,
    whether the request ran to the end, failed, or never started (a client can
    leave before the first byte). Whoever answers the request calls ``close``
    when the response is over; ``stream`` and ``text`` close it themselves on
    every way out.
    """

    def __init__(
        self, service: GenerationService, prompt: Prompt, options: SamplingOptions, ticket: Ticket
    ) -> None:
        self._service = service
        self.prompt = prompt
        self.options = options
        self.completion = Completion(uuid.uuid4().hex, prompt_tokens=len(prompt.token_ids))
        self._ticket = ticket
        self._recorder = RequestRecorder(service.model_name, service.backend_name)
        self._slot_wait: asyncio.Future[None] | None = None
        self._in_engine = False
        self._abandoned = False
        self._closed = False

    async def text(self) -> str:
        """Run to the end; the whole text."""
        return "".join([delta.text async for delta in self.stream()])

    async def stream(self) -> AsyncIterator[Delta]:
        """Run, yielding text deltas and updating ``completion``.

        The request's deadline counts from here, queueing included: past it the
        engine aborts the request and this raises ``RequestTimedOut``. Closing
        the iterator early (the client went away) aborts it in the engine
        before its next token.
        """
        service = self._service
        completion = self.completion
        timeout_s = service.limits.request_timeout_s
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        timed_out = False
        expiry: asyncio.Task[None] | None = None

        def expire() -> None:
            nonlocal timed_out, expiry
            timed_out = True
            if self._slot_wait is not None:
                self._slot_wait.cancel()
            expiry = loop.create_task(service.backend.abort(completion.request_id))

        timer = loop.call_at(deadline, expire)
        chunks = service.backend.generate(
            completion.request_id, self.prompt, self.options, on_start=self._recorder.started
        )
        status = "error"
        try:
            if not await self._wait_for_slot():
                if timed_out:
                    raise RequestTimedOut(timeout_s)
                status = "aborted"  # the client left while queued: the engine never sees it
                return
            if service.cut_off_error is not None:
                raise service.cut_off_error()
            service.active[completion.request_id] = None
            self._in_engine = True
            async for chunk in chunks:
                if chunk.cached_tokens:
                    completion.cached_tokens = chunk.cached_tokens
                    self._recorder.prompt_reuse(chunk.cached_tokens, chunk.cache_source)
                self._recorder.tokens(chunk.num_tokens)
                completion.completion_tokens += chunk.num_tokens
                if chunk.finish_reason is not None:
                    completion.finish_reason = chunk.finish_reason
                if chunk.text or chunk.finish_reason is not None:
                    yield Delta(chunk.text, chunk.finish_reason)
            status = "ok"
        except RequestAborted:
            if timed_out:
                raise RequestTimedOut(timeout_s) from None
            if service.cut_off_error is not None:
                raise service.cut_off_error() from None
            # abort() by the door: the client is gone, end quietly.
            status = "aborted"
        except (GeneratorExit, asyncio.CancelledError):
            status = "aborted"
            raise
        except ServingError:
            raise
        except Exception as exc:
            logger.exception("generation failed for request %s", completion.request_id)
            await service.check_engine(exc)
            raise GenerationFailed() from exc
        finally:
            timer.cancel()
            service.active.pop(completion.request_id, None)
            # An abandoned async generator is only closed by the garbage
            # collector; close the engine's stream now so decoding stops.
            await chunks.aclose()
            self._finish(status, ran=self._in_engine)

    async def _wait_for_slot(self) -> bool:
        """Wait in arrival order for an engine slot; False if abandoned meanwhile."""
        if self._abandoned:
            return False
        self._slot_wait = asyncio.ensure_future(self._ticket.run_slot())
        try:
            await self._slot_wait
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # we ourselves are being cancelled, not only the wait
            return False
        finally:
            self._slot_wait = None
        return not self._abandoned

    async def abort(self) -> None:
        """The client went away: a queued request never reaches the engine, a running
        one stops before its next token."""
        self._abandoned = True
        if self._slot_wait is not None:
            self._slot_wait.cancel()
        elif self._in_engine:
            await self._service.backend.abort(self.completion.request_id)

    def close(self) -> None:
        """The response is over: give the admission place back (idempotent).

        A request that never started counts as aborted.
        """
        self._finish("aborted", ran=False)

    def _finish(self, status: str, *, ran: bool) -> None:
        if self._closed:
            return
        self._closed = True
        self._ticket.release()
        self._recorder.finish(status, self.completion.prompt_tokens if ran else None)


class GenerationService:
    """Validates requests against the loaded model, admits them, and runs them."""

    def __init__(
        self,
        backend: Backend | None,
        *,
        backend_name: str,
        model_name: str,
        limits: RequestLimits,
        admission: Admission,
        lifecycle: Lifecycle,
    ) -> None:
        # None until the model's files are fetched (see model_plan): the
        # service exists from the start, so the port can open first.
        self._backend = backend
        self.backend_name = backend_name
        self.model_name = model_name
        self.limits = limits
        self.admission = admission
        self.lifecycle = lifecycle
        # Request id -> nothing: the requests the engine holds, for cut_off().
        self.active: dict[str, None] = {}
        # Once set, every request still in flight ends with the error this makes.
        self.cut_off_error: Callable[[], ServingError] | None = None

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            raise NotReady(self.model_name)
        return self._backend

    @backend.setter
    def backend(self, backend: Backend) -> None:
        self._backend = backend

    async def prepare(
        self, request: GenerationInput, params: GenerationParams, *, model: str | None = None
    ) -> Prepared:
        """Check, render and admit one request; every refusal is counted here.

        ``model`` is the name the client asked for, where the door has one.
        Raises a ``ServingError`` for any refusal.
        """
        try:
            if model is not None and model != self.model_name:
                raise UnknownModel(model)
            self.lifecycle.require_serving()
            prompt = await self._prompt(request)
            options = self._sampling_options(prompt, params, prompt_field=request.field)
            ticket = self.admission.admit()
        except ServingError as error:
            self.record_refused(error)
            raise
        return Prepared(self, prompt, options, ticket)

    def record_refused(self, error: ServingError) -> None:
        """Count a request refused before it was admitted.

        ``prepare`` calls this itself; a door calls it for what it refuses
        before it can call ``prepare`` (a body that is not JSON, say).
        """
        record_rejected_request(self.model_name, self.backend_name, error.outcome)

    async def _prompt(self, request: GenerationInput) -> Prompt:
        """Render and tokenize off the event loop: a long prompt takes milliseconds."""
        backend = self.backend
        if isinstance(request, ChatInput):
            try:
                return await asyncio.to_thread(backend.render_chat, request.messages)
            except ChatTemplateError as exc:
                raise InvalidParam(str(exc), param="messages") from exc
        ids = await asyncio.to_thread(backend.tokenize, request.text)
        if not ids:
            # Nothing to condition on: the engine would be asked to decode an empty batch.
            raise InvalidParam("prompt must not be empty", param="prompt")
        return Prompt(text=request.text, token_ids=ids)

    def _sampling_options(
        self, prompt: Prompt, params: GenerationParams, *, prompt_field: str
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
            raise InvalidParam(
                f"the prompt is {prompt_tokens} tokens, above this server's limit of "
                f"{limits.max_prompt_tokens}",
                param=prompt_field,
            )
        if params.max_tokens is not None and params.max_tokens > limits.max_tokens_cap:
            raise InvalidParam(
                f"max_tokens is {params.max_tokens}, above this server's limit of "
                f"{limits.max_tokens_cap}",
                param="max_tokens",
            )
        room = context - prompt_tokens
        if room < 1 or (params.max_tokens is not None and params.max_tokens > room):
            asked = params.max_tokens if params.max_tokens is not None else 1
            raise ContextTooLong(
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
            raise InvalidParam(
                f"{len(stop)} stop sequences given; this server allows at most "
                f"{limits.max_stop_sequences}",
                param="stop",
            )
        if any(len(sequence) > limits.max_stop_length for sequence in stop):
            raise InvalidParam(
                f"a stop sequence is longer than this server's limit of "
                f"{limits.max_stop_length} characters",
                param="stop",
            )
        if any(not sequence for sequence in stop):
            raise InvalidParam("stop sequences must not be empty", param="stop")

    async def check_engine(self, error: BaseException) -> None:
        """After a failed request: if the engine itself is gone, tell the lifecycle."""
        if not self.lifecycle.failed and not await self.backend.healthy():
            self.lifecycle.fail(f"{type(error).__name__}: {error}")

    # The lifecycle's view of the admitted requests (lifecycle.InFlight).

    @property
    def in_flight(self) -> int:
        return self.admission.in_flight

    async def wait_idle(self) -> None:
        await self.admission.wait_idle()

    async def cut_off(self, error: Callable[[], ServingError]) -> None:
        """End every admitted request now with ``error()`` (drain deadline, dead engine).

        A request cut off mid-stream must not look finished: a 200 with half an
        answer is silent corruption, so it ends with this error instead.
        """
        self.cut_off_error = error
        if self._backend is None:
            return
        for request_id in list(self.active):
            await self._backend.abort(request_id)
