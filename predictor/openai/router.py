"""HTTP layer of the OpenAI-compatible API: content type, JSON, disconnects.

Mounted under ``/openai/v1`` (KServe's prefix) and ``/v1`` (so that
``base_url="http://host/v1"`` works with the official client). Requests are
prepared and run by ``predictor.generation``; ``serving.py`` shapes the answers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Literal

import orjson
from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from predictor.errors import ServingError
from predictor.generation import GenerationService, Prepared
from predictor.openai.errors import MalformedJSON, UnsupportedMediaType
from predictor.openai.openapi import (
    chat_operation,
    completion_operation,
    document_answering_routes,
    models_operation,
)
from predictor.openai.protocol import ChatCompletionRequest, CompletionRequest, parse_request
from predictor.openai.serving import OpenAICall, event_stream, response_body

API_PREFIXES = ("/openai/v1", "/v1")


async def read_json_body(request: Request) -> Any:
    """The request's JSON, refusing other content types (415).

    The body's size was bounded before routing (``body_limit.BodyLimitMiddleware``).
    """
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise UnsupportedMediaType(
            f"Content-Type must be application/json, got '{media_type or 'none'}'"
        )
    try:
        return orjson.loads(await request.body())
    except orjson.JSONDecodeError as exc:
        raise MalformedJSON(
            f"request body is not valid JSON: {exc.msg} at position {exc.pos}"
        ) from None


async def _abort_when_disconnected(receive: Receive, abort: Callable[[], Awaitable[None]]) -> None:
    # The body is read already, so the next ASGI message can only be the disconnect.
    while (await receive())["type"] != "http.disconnect":
        pass
    await abort()


class _EventStreamResponse(StreamingResponse):
    """SSE that aborts the generation when the client disconnects, even while queued.

    Starlette notices a gone client only when a write fails, and a request still
    waiting for the engine writes nothing. A watcher task on the side, rather
    than a wrapper generator, keeps the per-token path one hop shorter.
    """

    def __init__(self, events: AsyncIterator[bytes], prepared: Prepared) -> None:
        super().__init__(
            events,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self._prepared = prepared

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        watcher = asyncio.create_task(_abort_when_disconnected(receive, self._prepared.abort))
        try:
            await super().__call__(scope, receive, send)
        finally:
            watcher.cancel()
            # A stream cut short leaves its generator suspended; close it now so
            # the engine stops instead of waiting for the garbage collector.
            await self.body_iterator.aclose()
            # A generator that never started runs no finally of its own.
            self._prepared.close()


def create_openai_router(service: GenerationService) -> APIRouter:
    """The OpenAI routes for one served model."""

    async def answer(request: Request, kind: Literal["chat", "text"]) -> Response:
        schema = ChatCompletionRequest if kind == "chat" else CompletionRequest
        try:
            parsed = parse_request(schema, await read_json_body(request))
        except ServingError as error:
            service.record_refused(error)  # prepare counts the refusals after this point
            raise
        prepared = await service.prepare(
            parsed.generation_input(), parsed.generation_params(), model=parsed.model
        )
        call = OpenAICall(kind, service.model_name, prepared, parsed.include_usage)
        if parsed.stream:
            return _EventStreamResponse(event_stream(call), prepared)
        watcher = asyncio.create_task(_abort_when_disconnected(request.receive, prepared.abort))
        try:
            # orjson directly: recent FastAPI releases deprecate ORJSONResponse and warn.
            return Response(orjson.dumps(await response_body(call)), media_type="application/json")
        finally:
            watcher.cancel()
            prepared.close()

    async def chat_completions(request: Request) -> Response:
        return await answer(request, "chat")

    async def completions(request: Request) -> Response:
        return await answer(request, "text")

    started = int(time.time())

    async def list_models() -> dict[str, Any]:
        # GET /v1/models is also KServe's v1 model list ({"models": [...]}); this
        # body satisfies both the OpenAI client ("data") and KServe clients ("models").
        return {
            "object": "list",
            "data": [
                {
                    "id": service.model_name,
                    "object": "model",
                    "created": started,
                    "owned_by": "kzero",
                }
            ],
            "models": [service.model_name],
        }

    # The OpenAPI declarations (openapi.py) are read when /openapi.json is built;
    # they add nothing to the request path. response_model=None: list_models'
    # dict goes out as is, and ModelList documents it.
    router = APIRouter(lifespan=document_answering_routes)
    chat_docs = chat_operation(service.model_name)
    completion_docs = completion_operation(service.model_name)
    for prefix in API_PREFIXES:
        router.add_api_route(
            f"{prefix}/chat/completions", chat_completions, methods=["POST"], **chat_docs
        )
        router.add_api_route(
            f"{prefix}/completions", completions, methods=["POST"], **completion_docs
        )
        router.add_api_route(
            f"{prefix}/models",
            list_models,
            methods=["GET"],
            response_model=None,
            **models_operation(),
        )
    return router
