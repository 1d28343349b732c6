"""OpenAI-style errors: one exception type per case, one table of statuses.

Every error leaves the server as ``{"error": {"message", "type", "param", "code"}}``
with the HTTP status below, which is what the official ``openai`` client parses
into ``BadRequestError``, ``NotFoundError`` and friends.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import Response


class OpenAIError(Exception):
    """Base class: subclasses fix the status, type and code."""

    status_code = 500
    error_type = "internal_error"
    code: str | None = None
    # Seconds for a Retry-After header, for statuses a client should retry.
    retry_after: int | None = None

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }


class InvalidRequest(OpenAIError):
    status_code = 400
    error_type = "invalid_request_error"


class MalformedJSON(InvalidRequest):
    code = "invalid_json"


class ContextLengthExceeded(InvalidRequest):
    code = "context_length_exceeded"

    def __init__(self, message: str, *, param: str = "messages") -> None:
        super().__init__(message, param=param)


class ModelNotFound(OpenAIError):
    status_code = 404
    error_type = "invalid_request_error"
    code = "model_not_found"

    def __init__(self, model: str) -> None:
        super().__init__(f"The model '{model}' does not exist", param="model")


class RequestTooLarge(OpenAIError):
    status_code = 413
    error_type = "invalid_request_error"
    code = "request_too_large"


class UnsupportedMediaType(OpenAIError):
    status_code = 415
    error_type = "invalid_request_error"
    code = "unsupported_media_type"


class TooManyRequests(OpenAIError):
    """Admission is full; the client should retry after ``retry_after`` seconds."""

    status_code = 429
    error_type = "rate_limit_error"
    code = "too_many_requests"
    retry_after = 1


class ModelNotReady(OpenAIError):
    status_code = 503
    error_type = "service_unavailable"
    code = "model_not_ready"
    retry_after = 5

    def __init__(self, model: str) -> None:
        super().__init__(f"The model '{model}' is still loading; retry shortly")


class ShuttingDown(OpenAIError):
    """SIGTERM arrived: this replica takes no new work; another one (or a new pod) will."""

    status_code = 503
    error_type = "service_unavailable"
    code = "shutting_down"
    retry_after = 1

    def __init__(self) -> None:
        super().__init__("This server is shutting down; retry the request")


class EngineDead(OpenAIError):
    """The engine failed; the process is exiting so Kubernetes restarts it."""

    status_code = 503
    error_type = "service_unavailable"
    code = "engine_dead"
    retry_after = 5

    def __init__(self) -> None:
        super().__init__("The inference engine failed and is restarting; retry shortly")


class RequestTimeout(OpenAIError):
    status_code = 504
    error_type = "timeout_error"
    code = "request_timeout"

    def __init__(self, timeout_s: float) -> None:
        super().__init__(f"The request did not finish within this server's {timeout_s:g} s limit")


class InternalError(OpenAIError):
    """The engine failed on an accepted request; the message carries no internals."""


async def openai_error_handler(request: Request, exc: Exception) -> Response:
    """FastAPI exception handler for ``OpenAIError``."""
    assert isinstance(exc, OpenAIError)
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
    # orjson directly: recent FastAPI releases deprecate ORJSONResponse and warn.
    return Response(
        orjson.dumps(exc.body()),
        status_code=exc.status_code,
        headers=headers,
        media_type="application/json",
    )
