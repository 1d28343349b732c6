"""One request-body limit for every route (``--max_request_bytes``).

ASGI middleware, so it covers KServe's own routes too: KServe's ``:predict``
and ``/v2/.../infer`` read the whole body, parse it and hand it to the model
before any check of kzero's could run, so a limit inside a route came too late
for them (a 1.1 MB ``:predict`` body was read and tokenized before its 400).
"""

from __future__ import annotations

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from predictor.asgi_json import send_json
from predictor.openai.errors import RequestTooLarge, error_body


async def _answer_413(send: Send, limit: int) -> None:
    body = orjson.dumps(
        error_body(RequestTooLarge(f"request body exceeds the limit of {limit} bytes"))
    )
    # The rest of an oversized body is not read: the connection cannot be reused.
    await send_json(send, 413, body, ((b"connection", b"close"),))


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


class BodyLimitMiddleware:
    """Reads each request body up to ``max_bytes`` before the app sees it; 413 beyond.

    A declared Content-Length above the limit is refused before a byte is read;
    a chunked body is refused as soon as it passes the limit. The app then
    receives the body in one message, and later messages (the disconnect) as sent.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _declared_length(scope)
        if declared is not None and declared > self.max_bytes:
            await _answer_413(send, self.max_bytes)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # gone before the body arrived: nothing to answer
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                await _answer_413(send, self.max_bytes)
                return
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        await self.app(scope, replay, send)
