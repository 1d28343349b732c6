"""What ``/openapi.json`` says about the OpenAI routes.

The routes read the raw request (content type and size are checked before any
parsing, and FastAPI's body validation stays off the hot path), so FastAPI
cannot infer their bodies. This module declares them instead: the request
schemas of ``protocol.py``, the response schemas of ``responses.py``, the
Server-Sent Events, and every error status with the OpenAI error body.
Everything here runs when the document is built, never per request.
tests/integration/test_fuzz_openapi.py holds the server to this document.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from predictor.openai.protocol import ChatCompletionRequest, CompletionRequest
from predictor.openai.responses import (
    ChatCompletion,
    ChatCompletionChunk,
    ErrorResponse,
    ModelList,
    TextCompletion,
    TextCompletionChunk,
)

try:
    from fastapi.routing import iter_route_contexts
except ImportError:  # FastAPI before lazily included routers: app.routes is flat already.

    def iter_route_contexts(routes: Iterable[Any]) -> Iterator[Any]:  # type: ignore[misc]
        return iter(routes)


def inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """Pydantic's JSON schema with every ``#/$defs/X`` replaced by ``X`` itself.

    A ``$ref`` into ``$defs`` resolves against the whole OpenAPI document, not
    against the schema that holds ``$defs``, so a pydantic schema pasted into
    ``openapi_extra`` would carry dangling references. Inlined, it can sit
    anywhere. (None of these models is recursive.)
    """
    defs = schema.get("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, list):
            return [resolve(item) for item in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            siblings = {key: resolve(value) for key, value in node.items() if key != "$ref"}
            return {**resolve(defs[ref.removeprefix("#/$defs/")]), **siblings}
        return {key: resolve(value) for key, value in node.items() if key != "$defs"}

    return resolve(schema)


def _response_schema(model: type[BaseModel]) -> dict[str, Any]:
    return inline_refs(model.model_json_schema(mode="serialization"))


def sse_event_schema(chunk: type[BaseModel]) -> dict[str, Any]:
    """One Server-Sent Event of a streamed completion.

    ``data`` is a JSON chunk, or an error body when generation fails after the
    headers went out (the status is 200 by then), and ``[DONE]`` ends the stream.
    """
    return {
        "type": "object",
        "required": ["data"],
        "properties": {
            "data": {
                "type": "string",
                "if": {"const": "[DONE]"},
                "else": {
                    "contentMediaType": "application/json",
                    "contentSchema": {
                        "anyOf": [_response_schema(chunk), _response_schema(ErrorResponse)]
                    },
                },
            },
            "event": {"type": "string"},
            "id": {"type": "string"},
            "retry": {"type": "integer", "minimum": 0},
        },
    }


_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before retrying.",
        "schema": {"type": "integer", "minimum": 0},
    }
}


def _error(description: str, **extra: Any) -> dict[str, Any]:
    return {"model": ErrorResponse, "description": description, **extra}


_UNAUTHORIZED = _error(
    "Missing or wrong API key (only when the server has API keys): send "
    "'Authorization: Bearer <key>' (code invalid_api_key).",
    headers={"WWW-Authenticate": {"schema": {"type": "string", "const": "Bearer"}}},
)

_GENERATION_ERRORS: dict[int | str, dict[str, Any]] = {
    400: _error(
        "Invalid request: the body is not JSON (code invalid_json) or not an object, a field "
        "fails validation or asks for something this server does not support (n > 1, "
        "logprobs, tools, echo), max_tokens is above the server's cap, the prompt leaves no "
        "room in the context window (code context_length_exceeded), or the stop sequences "
        "are too many or too long."
    ),
    401: _UNAUTHORIZED,
    404: _error("The model named in the body is not the one served (code model_not_found)."),
    413: _error("The body is larger than --max_request_bytes (code request_too_large)."),
    415: _error("Content-Type is not application/json (code unsupported_media_type)."),
    429: _error(
        "Every running and queued slot is taken (--max_running_requests, "
        "--max_queued_requests; code too_many_requests).",
        headers=_RETRY_AFTER,
    ),
    500: _error("The engine failed on an accepted request; the message carries no internals."),
    503: _error(
        "The model is still loading (code model_not_ready), the server is shutting down "
        "(shutting_down) or the engine failed and the process is restarting (engine_dead).",
        headers=_RETRY_AFTER,
    ),
    504: _error("The request did not finish within --request_timeout_s (code request_timeout)."),
}


def _generation_operation(
    request: type[BaseModel],
    body: type[BaseModel],
    chunk: type[BaseModel],
    examples: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """``add_api_route`` keywords for a chat or text completion route."""
    ok = {
        "model": body,
        "description": (
            'The completion: one JSON body, or with "stream": true a stream of '
            "Server-Sent Events that ends with 'data: [DONE]'."
        ),
        "content": {"text/event-stream": {"itemSchema": sse_event_schema(chunk)}},
    }
    return {
        "responses": {200: ok, **_GENERATION_ERRORS},
        "openapi_extra": {
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": inline_refs(request.model_json_schema()),
                        "examples": {
                            name: {"summary": name, "value": value}
                            for name, value in examples.items()
                        },
                    }
                },
            }
        },
    }


def chat_operation(model_name: str) -> dict[str, Any]:
    message = {"model": model_name, "messages": [{"role": "user", "content": "Say hello."}]}
    return _generation_operation(
        ChatCompletionRequest,
        ChatCompletion,
        ChatCompletionChunk,
        {
            "chat": message,
            "streamed": {**message, "stream": True, "stream_options": {"include_usage": True}},
        },
    )


def completion_operation(model_name: str) -> dict[str, Any]:
    prompt = {"model": model_name, "prompt": "Once upon a time"}
    return _generation_operation(
        CompletionRequest,
        TextCompletion,
        TextCompletionChunk,
        {
            "completion": prompt,
            "streamed": {**prompt, "stream": True, "stream_options": {"include_usage": True}},
        },
    )


def models_operation() -> dict[str, Any]:
    return {
        "responses": {
            200: {"model": ModelList, "description": "The one model this server serves."},
            401: _UNAUTHORIZED,
        }
    }


def answering_routes(routes: Iterable[Any]) -> list[Any]:
    """The routes that answer requests: the first one for each path and method.

    Starlette dispatches to the first matching route, while FastAPI's document
    lets a later route with the same path and method overwrite an earlier one.
    KServe registers its own ``GET /v1/models`` when ``ModelServer`` starts,
    after this router; ours answers, so ours is the one to document.
    """
    seen: set[tuple[str, str]] = set()
    answering = []
    for route in iter_route_contexts(routes):
        path, methods = getattr(route, "path_format", None), getattr(route, "methods", None)
        keys = {(path, method) for method in methods or ()} if path else set()
        if keys and keys <= seen:
            continue
        seen |= keys
        answering.append(route)
    return answering


def answering_openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's own document (``FastAPI.openapi``), built from ``answering_routes`` only."""
    if not app.openapi_schema:
        app.openapi_schema = get_openapi(
            title=app.title,
            version=app.version,
            openapi_version=app.openapi_version,
            summary=app.summary,
            description=app.description,
            terms_of_service=app.terms_of_service,
            contact=app.contact,
            license_info=app.license_info,
            routes=answering_routes(app.routes),
            webhooks=app.webhooks.routes,
            tags=app.openapi_tags,
            servers=app.servers,
            separate_input_output_schemas=app.separate_input_output_schemas,
        )
    return app.openapi_schema


@asynccontextmanager
async def document_answering_routes(app: FastAPI) -> AsyncIterator[None]:
    """Router lifespan: from startup on, ``/openapi.json`` describes the routes that answer.

    A lifespan, because it is the router's only hook that sees the app, and it
    runs after KServe has added its routes. The document is still built lazily,
    on the first request for it.
    """
    app.openapi = lambda: answering_openapi(app)  # type: ignore[method-assign]
    yield
