"""The KServe door: the ``kserve.Model`` lifecycle hooks, readiness, and v1 ``:predict``.

KServe 0.21's ``ModelServer.start`` registers only models whose ``ready`` flag
is set at that moment, calls their ``start()``, then runs ``start_engine()``
next to uvicorn, so the port opens while the model loads. ``ready`` is True
for registration only; the lifecycle says whether the model serves, and
``healthy()``, which every KServe readiness endpoint calls
(``/v1/models/<name>``, ``/v2/models/<name>/ready``), reads it: 503 while
loading, 200 after, and Knative keeps traffic away until then.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import Response

# Submodules, never `from kserve import ...`: the serve path imports KServe's
# server without kserve/__init__.py (predictor/start_up.py).
from kserve.errors import InvalidInput
from kserve.model import Model
from kserve.protocol.infer_type import InferRequest

from predictor.errors import (
    InvalidBody,
    InvalidParam,
    NotReady,
    Overloaded,
    RequestTimedOut,
    ServingError,
    Unavailable,
)
from predictor.generation import GenerationService, Prepared
from predictor.lifecycle import Lifecycle
from predictor.metrics import BACKEND_INFO, COLD_START
from predictor.model_load import LoadedModel, LoadModel, ModelFetchError, load_backend, warm_up
from predictor.openai.protocol import ChatCompletionRequest, CompletionRequest, parse_request
from predictor.process_clock import seconds_since_process_start

logger = logging.getLogger(__name__)

# How often a ready model asks its engine whether it is still alive.
ENGINE_HEALTH_POLL_S = 5.0
# kzero_cold_start_seconds{phase}: the one-token warm-up after the load, before ready.
WARM_UP_PHASE = "warm_up"

PREDICT_HELP = (
    'send {"instances": [{"prompt": "..."}]} or {"instances": [{"messages": [...]}]}, '
    "with optional max_tokens, temperature, top_p, seed and stop per instance"
)


class PredictError(Exception):
    """A ``:predict`` refusal KServe has no exception for (429, 503 with Retry-After, 504).

    Answered in KServe's own error shape, ``{"error": message}`` (kserve 0.21.0,
    kserve/errors.py, ``invalid_input_handler`` and its siblings), by
    ``predict_error_handler``.
    """

    def __init__(self, error: ServingError, status: int) -> None:
        super().__init__(error.message)
        self.status = status
        self.retry_after = error.retry_after if isinstance(error, Unavailable) else None


def kserve_error(error: ServingError) -> Exception:
    """The KServe door's mapping: bad input is KServe's 400, the rest keeps its meaning."""
    if isinstance(error, InvalidParam):
        return InvalidInput(error.message)
    if isinstance(error, Overloaded):
        return PredictError(error, 429)
    if isinstance(error, Unavailable):
        return PredictError(error, 503)  # loading, draining, a dead engine
    if isinstance(error, RequestTimedOut):
        return PredictError(error, 504)
    return PredictError(error, 500)


async def predict_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PredictError)
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
    return Response(
        orjson.dumps({"error": str(exc)}),
        status_code=exc.status,
        headers=headers,
        media_type="application/json",
    )


class KzeroModel(Model):
    """One LLM served through KServe's lifecycle and v1 protocol."""

    def __init__(
        self,
        service: GenerationService,
        lifecycle: Lifecycle,
        *,
        selection_reason: str,
        max_instances: int = 16,
        load: LoadModel | None = None,
    ) -> None:
        """``load`` fetches (if need be) and loads the engine; by default the
        service's backend loads in the server's event loop."""
        super().__init__(service.model_name)
        self.service = service
        self.max_instances = max_instances
        self.lifecycle = lifecycle
        self.selection_reason = selection_reason
        self._load = load or self._load_in_this_loop
        self._background: set[asyncio.Task[None]] = set()
        self._loading: asyncio.Task[None] | None = None
        # True only so that ModelServer.start registers us; healthy() decides readiness.
        self.ready = True
        self.engine = True

    async def start_engine(self) -> None:
        """Fetch the model if it comes after the port, load the weights, run a
        one-token warm-up, then report ready.

        A failure here is the engine failing: one log line, and the process
        exits non-zero once uvicorn has stopped, instead of serving 503 forever.
        """
        self._in_background(self.lifecycle.supervise(self.service))
        self._loading = asyncio.create_task(self._fetch_and_load())
        # KServe gathers this coroutine with the HTTP server and waits for both,
        # so a SIGTERM during a minutes-long download or vLLM start must end it:
        # stop() cancels the loading, and asyncio.wait returns instead of raising.
        await asyncio.wait({self._loading})
        if not self._loading.cancelled():
            self._loading.result()  # an unexpected error surfaces as before

    async def _load_in_this_loop(self) -> LoadedModel:
        return await load_backend(self.service.backend, self.selection_reason)

    async def _fetch_and_load(self) -> None:
        try:
            loaded = await self._load()
            # In this loop, also after a load on a thread of its own: see predictor/model_load.py.
            warm_up_s = await warm_up(loaded.backend)
        except ModelFetchError as exc:
            self.lifecycle.fail(f"cannot fetch the model: {exc}")
            return
        except Exception as exc:
            self.lifecycle.fail(f"cannot load the model: {exc}")
            return
        self.service.backend, self.selection_reason = loaded.backend, loaded.reason
        labels = (self.name, self.service.backend_name)
        COLD_START.labels("load", *labels).observe(loaded.load_s)
        # Not one of metrics.EVERY_PROCESS_PHASES: assembly.build_predictor exports it at 0.
        COLD_START.labels(WARM_UP_PHASE, *labels).observe(warm_up_s)
        info = loaded.backend.info
        self.service.admission.resize(info.max_parallel)
        BACKEND_INFO.labels(
            info.backend, info.device, self.name, info.quantization, self.selection_reason
        ).set(1)
        self.lifecycle.mark_ready()
        self._in_background(self._watch_engine())
        ready_after = seconds_since_process_start()
        COLD_START.labels("ready", *labels).observe(ready_after)
        logger.info(
            "model %s ready %.2fs after process start (load %.2fs, warm-up %.2fs): backend=%s "
            "device=%s quantization=%s context=%d (%s)",
            self.name, ready_after, loaded.load_s, warm_up_s, info.backend, info.device,
            info.quantization, info.context_length, self.selection_reason,
        )  # fmt: skip

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        # The loop keeps only weak references to tasks: hold them here.
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _watch_engine(self) -> None:
        """An engine can die between requests (vLLM's engine core process): poll its health."""
        while self.lifecycle.serving:
            await asyncio.sleep(ENGINE_HEALTH_POLL_S)
            if self.lifecycle.serving and not await self.service.backend.healthy():
                self.lifecycle.fail("the engine reports itself unhealthy")

    async def healthy(self) -> bool:
        """Readiness: false while loading, draining or failed, so Knative routes elsewhere."""
        return self.lifecycle.serving and await self.service.backend.healthy()

    def stop(self) -> None:
        """KServe's unload, after uvicorn stopped: nothing may be admitted any more,
        and a load still in progress is abandoned."""
        self.lifecycle.request_drain()
        if self._loading is not None and not self._loading.done():
            logger.info("stopping before the model was ready: abandoning the load")
            self._loading.cancel()

    def stop_engine(self) -> None:
        """KServe's unload, after ``stop``: release the engine (vLLM's engine core process)."""
        try:
            backend = self.service.backend
        except NotReady:
            return  # never fetched: nothing to release
        logger.info("releasing the engine")
        self._in_background(backend.shutdown())

    async def predict(
        self, payload: dict[str, Any] | InferRequest, headers: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """KServe v1: each instance is a prompt or a conversation; returns its completion.

        All or nothing: every instance is checked and admitted before any runs,
        and a refusal of one refuses the request (the places already taken go
        back). A failure of one instance cancels the others, and so does the
        client leaving (``disconnect.CancelOnDisconnectMiddleware``).
        """
        try:
            instances = self._instances(payload)
            prepared = await self._prepare_all(instances)
            try:
                async with asyncio.TaskGroup() as group:
                    runs = [group.create_task(each.text()) for each in prepared]
            except* ServingError as failed:
                raise failed.exceptions[0] from None
            finally:
                for each in prepared:
                    each.close()
        except ServingError as error:
            raise kserve_error(error) from None
        return {
            "predictions": [
                {
                    "text": run.result(),
                    "finish_reason": each.completion.finish_reason,
                    "usage": each.completion.usage(),
                }
                for run, each in zip(runs, prepared, strict=True)
            ]
        }

    def _instances(self, payload: dict[str, Any] | InferRequest) -> list[dict[str, Any]]:
        """The instances, each parsed; any refusal is counted and raised."""
        try:
            if isinstance(payload, InferRequest) or not isinstance(payload.get("instances"), list):
                raise InvalidBody(f"kzero speaks KServe v1 here: {PREDICT_HELP}")
            instances = payload["instances"]
            if not instances:
                raise InvalidBody(f"instances is empty: {PREDICT_HELP}")
            if len(instances) > self.max_instances:
                raise InvalidParam(
                    f"{len(instances)} instances given; this server takes at most "
                    f"{self.max_instances} per request",
                    param="instances",
                )
            if any(
                not isinstance(each, dict) or ("prompt" in each) == ("messages" in each)
                for each in instances
            ):
                raise InvalidBody(
                    f"each instance needs exactly one of prompt or messages: {PREDICT_HELP}"
                )
            return [
                parse_request(
                    ChatCompletionRequest if "messages" in each else CompletionRequest,
                    {**each, "model": self.name, "stream": False},
                )
                for each in instances
            ]
        except ServingError as error:
            self.service.record_refused(error)
            raise

    async def _prepare_all(self, requests: list[Any]) -> list[Prepared]:
        prepared: list[Prepared] = []
        try:
            for request in requests:
                prepared.append(
                    await self.service.prepare(
                        request.generation_input(), request.generation_params()
                    )
                )
        except BaseException:
            for each in prepared:
                each.close()
            raise
        return prepared
