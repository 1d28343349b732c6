"""Cancellation of a request's handling when its client disconnects.

For routes that read nothing after their body, KServe's ``:predict`` above all:
its handler never looks at the connection again, so a client that leaves would
still have every instance decoded for nobody.
"""

from __future__ import annotations

import asyncio
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class CancelOnDisconnectMiddleware:
    """Cancels the handling of a matching request when its client disconnects.

    KServe's ``:predict`` handler never looks at the connection again after the
    body (kserve 0.21.0, kserve/protocol/rest/v1_endpoints.py, ``V1Endpoints.predict``:
    it reads the body, then awaits the dataplane), so without this a client that leaves still has every instance decoded
    for nobody. Cancelling the handler aborts each instance's generation (its
    ``Prepared.stream`` closes the engine's stream), like vLLM's
    ``with_cancellation`` does for its routes. Meant for routes that read
    nothing after the body; behind ``BodyLimitMiddleware``, whose replay hands
    on later messages as they come.
    """

    def __init__(self, app: ASGIApp, *, path: re.Pattern[str]) -> None:
        self.app = app
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.path.search(scope["path"]):
            await self.app(scope, receive, send)
            return
        body = await receive()  # the whole body: BodyLimitMiddleware replays it in one piece
        delivered = False

        async def app_receive() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return body
            return await asyncio.Future()  # the disconnect is ours to watch

        handling = asyncio.create_task(self.app(scope, app_receive, send))
        watching = asyncio.create_task(_until_disconnect(receive))
        try:
            await asyncio.wait({handling, watching}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watching.cancel()
            if not handling.done():
                handling.cancel()
                await asyncio.gather(handling, return_exceptions=True)
        if not handling.cancelled():
            handling.result()


async def _until_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
