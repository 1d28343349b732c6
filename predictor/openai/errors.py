"""OpenAI-style errors: one exception type per case, one table of statuses.

Every error leaves the server as ``{"error": {"message", "type", "param", "code"}}``
with the HTTP status below, which is what the official ``openai`` client parses
into ``BadRequestError``, ``NotFoundError`` and friends.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import ORJSONResponse


class OpenAIError(Exception):
    """Base class: subclasses fix the status, type and code."""

    status_code = 500
    error_type = "internal_error"
    code: str | None = None

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

    def __init__(self, message: str) -> None:
        super().__init__(message, param="messages")


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


class ModelNotReady(OpenAIError):
    status_code = 503
    error_type = "service_unavailable"
    code = "model_not_ready"

    def __init__(self, model: str) -> None:
        super().__init__(f"The model '{model}' is still loading; retry shortly")


class InternalError(OpenAIError):
    """The engine failed on an accepted request; the message carries no internals."""


async def openai_error_handler(request: Request, exc: Exception) -> ORJSONResponse:
    """FastAPI exception handler for ``OpenAIError``."""
    assert isinstance(exc, OpenAIError)
    headers = {"Retry-After": "5"} if isinstance(exc, ModelNotReady) else None
    return ORJSONResponse(exc.body(), status_code=exc.status_code, headers=headers)
