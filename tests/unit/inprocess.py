"""Both doors in-process: kzero's routes and KServe's v1 routes on a fresh app, no sockets.

The app is put together the way the server puts it together: ``predictor.app.mount``
first, then KServe's own v1 endpoints and error handlers, as ``ModelServer``
adds them to ``kserve.model_server.app``. The backend is scripted, so these tests
reason about the adapters; the integration tests prove the same on the real model.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import orjson
from fastapi import FastAPI
from kserve import errors as kserve_errors
from kserve.model_repository import ModelRepository
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.rest.v1_endpoints import register_v1_endpoints

from bench.harness.sse import Event, events
from predictor.app import mount
from predictor.generation import GenerationService
from predictor.model import KzeroModel
from predictor.settings import Settings


def kzero_app(
    service: GenerationService, *, key_hashes: tuple[bytes, ...] = (), **settings: Any
) -> FastAPI:
    app = FastAPI()
    mount(app, service, Settings(**settings), key_hashes)
    registry = ModelRepository()
    registry.update(KzeroModel(service, service.lifecycle, selection_reason="test"))
    register_v1_endpoints(app, DataPlane(model_registry=registry), None)
    app.add_exception_handler(kserve_errors.InvalidInput, kserve_errors.invalid_input_handler)
    app.add_exception_handler(kserve_errors.ModelNotReady, kserve_errors.model_not_ready_handler)
    return app


def client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://kzero")


def sse_payloads(body: bytes) -> list[Event]:
    """The events of a whole event stream (``[DONE]`` as the string), through the one SSE reader."""
    assert body.endswith(b"\n\n"), "an event stream ends with a blank line"
    return list(events(body.decode().splitlines()))


async def stream_until(
    app: FastAPI,
    path: str,
    body: dict[str, Any],
    leave_when: Callable[[list[bytes]], bool] = lambda chunks: False,
    gone: asyncio.Event | None = None,
) -> list[bytes]:
    """Drive the ASGI app as a client that disconnects once ``leave_when(chunks)`` holds,
    or once ``gone`` is set by the test.

    httpx's ASGI transport cannot leave mid-response, so this speaks ASGI
    directly: the request body, then, once the client leaves, ``http.disconnect``
    to every ``receive``, as uvicorn does when the socket closes. Returns the
    body chunks the app sent, before and after the client left.
    """
    chunks: list[bytes] = []
    gone = gone or asyncio.Event()
    body_taken = False

    async def receive() -> dict[str, Any]:
        nonlocal body_taken
        if not body_taken:
            body_taken = True
            return {"type": "http.request", "body": orjson.dumps(body), "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body" and message.get("body"):
            chunks.append(message["body"])
            if leave_when(chunks):
                gone.set()

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"host", b"kzero")],
        "client": ("127.0.0.1", 1),
        "server": ("kzero", 80),
    }
    await app(scope, receive, send)
    return chunks
