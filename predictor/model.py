"""The ``kserve.Model``: lifecycle, readiness and KServe's v1 ``:predict``.

KServe 0.21's ``ModelServer.start`` registers only models whose ``ready`` flag
is set at that moment, calls their ``start()``, then runs ``start_engine()``
next to uvicorn, so the port opens while the model loads. So ``ready`` is True
for registration only; ``start()`` clears it, and ``start_engine()`` sets it
again after the load and a one-token warm-up. ``healthy()``, which every KServe
readiness endpoint calls (``/v1/models/<name>``, ``/v2/models/<name>/ready``),
follows it: 503 while loading, 200 after, and Knative keeps traffic away until then.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from kserve import Model
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferRequest

from predictor.backends.base import Backend, Prompt, SamplingOptions
from predictor.generation import GenerationService, ServingState, new_completion
from predictor.metrics import BACKEND_INFO, COLD_START
from predictor.openai.errors import OpenAIError
from predictor.openai.protocol import ChatCompletionRequest, CompletionRequest, parse_request
from predictor.openai.serving import usage_body
from predictor.process_clock import seconds_since_process_start
from predictor.shutdown import Shutdown

logger = logging.getLogger(__name__)

# How often a ready model asks its engine whether it is still alive.
ENGINE_HEALTH_POLL_S = 5.0

PREDICT_HELP = (
    'send {"instances": [{"prompt": "..."}]} or {"instances": [{"messages": [...]}]}, '
    "with optional max_tokens, temperature, top_p, seed and stop per instance"
)


# Fetches a remote model after the port opened: its backend, and why it was chosen.
BackendFetch = Callable[[], Awaitable[tuple[Backend, str]]]


class KzeroModel(Model):
    """One LLM served through KServe's lifecycle and v1 protocol."""

    def __init__(
        self,
        name: str,
        service: GenerationService,
        *,
        selection_reason: str,
        shutdown: Shutdown,
        fetch_backend: BackendFetch | None = None,
    ) -> None:
        super().__init__(name)
        self.service = service
        self.selection_reason = selection_reason
        self.shutdown = shutdown
        self._fetch_backend = fetch_backend
        service.on_engine_failure = lambda error: shutdown.fail(f"{type(error).__name__}: {error}")
        self._background: set[asyncio.Task[None]] = set()
        self._loading: asyncio.Task[None] | None = None
        # True only so ModelServer.start registers us; start() clears it.
        self.ready = True
        self.engine = True

    def start(self) -> None:
        """Called by ModelServer right after registration: not ready until loaded."""
        self.ready = False

    async def start_engine(self) -> None:
        """Fetch the model if it comes after the port, load the weights, run a
        one-token warm-up, then report ready.

        A failure here is the engine failing: one log line, and the process
        exits non-zero once uvicorn has stopped, instead of serving 503 forever.
        """
        self._in_background(self.shutdown.install())
        self._loading = asyncio.create_task(self._fetch_and_load())
        # KServe gathers this coroutine with the HTTP server and waits for both,
        # so a SIGTERM during a minutes-long download or vLLM start must end it:
        # stop() cancels the loading, and asyncio.wait returns instead of raising.
        await asyncio.wait({self._loading})
        if not self._loading.cancelled():
            self._loading.result()  # an unexpected error surfaces as before

    async def _fetch_and_load(self) -> None:
        if self._fetch_backend is not None:
            try:
                self.service.backend, self.selection_reason = await self._fetch_backend()
            except Exception as exc:
                self.shutdown.fail(f"cannot fetch the model: {exc}")
                return
        load_started = time.perf_counter()
        backend = self.service.backend
        try:
            await backend.load()
            load_s = time.perf_counter() - load_started
            await self._warm_up()
        except Exception as exc:
            self.shutdown.fail(f"cannot load the model: {exc}")
            return
        labels = (self.name, self.service.backend_name)
        COLD_START.labels("load", *labels).observe(load_s)
        info = backend.info
        self.service.admission.resize(info.max_parallel)
        BACKEND_INFO.labels(
            info.backend, info.device, self.name, info.quantization, self.selection_reason
        ).set(1)
        self.service.mark_ready()
        self.ready = True
        self._in_background(self._watch_engine())
        ready_after = seconds_since_process_start()
        COLD_START.labels("ready", *labels).observe(ready_after)
        logger.info(
            "model %s ready %.2fs after process start: backend=%s device=%s quantization=%s "
            "context=%d (%s)",
            self.name, ready_after, info.backend, info.device, info.quantization,
            info.context_length, self.selection_reason,
        )  # fmt: skip

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        # The loop keeps only weak references to tasks: hold them here.
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _watch_engine(self) -> None:
        """An engine can die between requests (vLLM's engine core process): poll its health."""
        while self.service.state is ServingState.READY:
            await asyncio.sleep(ENGINE_HEALTH_POLL_S)
            if (
                self.service.state is ServingState.READY
                and not await self.service.backend.healthy()
            ):
                self.shutdown.fail("the engine reports itself unhealthy")

    async def _warm_up(self) -> None:
        # One token through the real path pages the weights in and builds the
        # compute graph, so the first user request does not pay for it. It
        # bypasses GenerationService so it is not counted in request metrics.
        backend = self.service.backend
        ids = await asyncio.to_thread(backend.tokenize, "Hello")
        prompt = Prompt(text="Hello", token_ids=ids)
        async for _ in backend.generate(
            "warm-up", prompt, SamplingOptions(max_tokens=1, temperature=0.0)
        ):
            pass

    async def healthy(self) -> bool:
        """Readiness: false while loading, draining or failed, so Knative routes elsewhere."""
        return (
            self.ready
            and self.service.state is ServingState.READY
            and await self.service.backend.healthy()
        )

    def stop(self) -> None:
        """KServe's unload, after uvicorn stopped: nothing may be admitted any more,
        and a load still in progress is abandoned."""
        self.ready = False
        self.service.begin_drain()
        if self._loading is not None and not self._loading.done():
            logger.info("stopping before the model was ready: abandoning the load")
            self._loading.cancel()

    async def predict(
        self, payload: dict[str, Any] | InferRequest, headers: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """KServe v1: each instance is a prompt or a conversation; returns its completion."""
        if isinstance(payload, InferRequest) or not isinstance(payload.get("instances"), list):
            raise InvalidInput(f"kzero speaks KServe v1 here: {PREDICT_HELP}")
        if not payload["instances"]:
            raise InvalidInput(f"instances is empty: {PREDICT_HELP}")
        try:
            predictions = await asyncio.gather(
                *(self._predict_one(instance) for instance in payload["instances"])
            )
        except OpenAIError as exc:
            # 429 and 5xx keep their status and Retry-After; the rest is bad input.
            if exc.status_code >= 500 or exc.status_code == 429:
                raise
            raise InvalidInput(exc.message) from None
        return {"predictions": list(predictions)}

    async def _predict_one(self, instance: Any) -> dict[str, Any]:
        if not isinstance(instance, dict) or ("prompt" in instance) == ("messages" in instance):
            raise InvalidInput(
                f"each instance needs exactly one of prompt or messages: {PREDICT_HELP}"
            )
        request = {**instance, "model": self.name, "stream": False}
        prompt: Prompt
        if "messages" in instance:
            chat = parse_request(ChatCompletionRequest, request)
            prompt = await self.service.chat_prompt(chat.message_dicts())
            params = chat.generation_params()
        else:
            text = parse_request(CompletionRequest, request)
            prompt = await self.service.text_prompt(text.prompt_text())
            params = text.generation_params()
        field = "messages" if "messages" in instance else "prompt"
        options: SamplingOptions = self.service.sampling_options(prompt, params, prompt_field=field)
        completion = new_completion(prompt)
        ticket = self.service.admit()
        try:
            output = await self.service.complete(prompt, options, completion, ticket)
        finally:
            ticket.release()
        return {
            "text": output,
            "finish_reason": completion.finish_reason,
            "usage": usage_body(completion),
        }
