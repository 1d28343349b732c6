"""The OpenAI door's view of errors: one table from error class to HTTP status, type and code.

Every error leaves the server as ``{"error": {"message", "type", "param", "code"}}``
with the status below, which is what the official ``openai`` client parses
into ``BadRequestError``, ``NotFoundError`` and friends. The serving layer
raises ``predictor.errors`` classes and knows nothing of this; the three
errors defined here exist only at the HTTP boundary (content type, body size,
JSON syntax).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import Response

from predictor.errors import (
    ContextTooLong,
    Draining,
    EngineDead,
    GenerationFailed,
    InvalidBody,
    InvalidParam,
    NotReady,
    Overloaded,
    RequestTimedOut,
    ServingError,
    Unavailable,
    UnknownModel,
)


class MalformedJSON(InvalidBody):
    """The body is not JSON at all."""


class RequestTooLarge(InvalidBody):
    """The body is above ``--max_request_bytes``."""


class UnsupportedMediaType(InvalidBody):
    """The Content-Type is not application/json."""


@dataclass(frozen=True)
class HttpError:
    status: int
    type: str
    code: str | None


# Looked up along the error's class hierarchy, most specific first, so a new
# subclass inherits its parent's row until it needs one of its own.
_TABLE: dict[type[ServingError], HttpError] = {
    MalformedJSON: HttpError(400, "invalid_request_error", "invalid_json"),
    RequestTooLarge: HttpError(413, "invalid_request_error", "request_too_large"),
    UnsupportedMediaType: HttpError(415, "invalid_request_error", "unsupported_media_type"),
    ContextTooLong: HttpError(400, "invalid_request_error", "context_length_exceeded"),
    UnknownModel: HttpError(404, "invalid_request_error", "model_not_found"),
    InvalidParam: HttpError(400, "invalid_request_error", None),
    Overloaded: HttpError(429, "rate_limit_error", "too_many_requests"),
    NotReady: HttpError(503, "service_unavailable", "model_not_ready"),
    Draining: HttpError(503, "service_unavailable", "shutting_down"),
    EngineDead: HttpError(503, "service_unavailable", "engine_dead"),
    Unavailable: HttpError(503, "service_unavailable", None),
    RequestTimedOut: HttpError(504, "timeout_error", "request_timeout"),
    GenerationFailed: HttpError(500, "internal_error", None),
    ServingError: HttpError(500, "internal_error", None),
}


def http_error(error: ServingError) -> HttpError:
    for cls in type(error).__mro__:
        row = _TABLE.get(cls)
        if row is not None:
            return row
    raise AssertionError("ServingError is in the table")  # pragma: no cover


def error_body(error: ServingError) -> dict[str, Any]:
    """The OpenAI error object, for a response body or an in-band stream event."""
    return {
        "error": {
            "message": error.message,
            "type": http_error(error).type,
            "param": error.param,
            "code": http_error(error).code,
        }
    }


def error_response(error: ServingError) -> Response:
    headers = {"Retry-After": str(error.retry_after)} if isinstance(error, Unavailable) else None
    # orjson directly: recent FastAPI releases deprecate ORJSONResponse and warn.
    return Response(
        orjson.dumps(error_body(error)),
        status_code=http_error(error).status,
        headers=headers,
        media_type="application/json",
    )


async def openai_error_handler(request: Request, exc: Exception) -> Response:
    """FastAPI exception handler for ``ServingError`` raised on the OpenAI routes."""
    assert isinstance(exc, ServingError)
    return error_response(exc)
