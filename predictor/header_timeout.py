"""A deadline for a request's headers: a client that opens a connection and
sends its request line and headers slowly, or not at all, is disconnected.

uvicorn has no such deadline (its keep-alive timer runs only between requests),
(uvicorn 0.55.0, uvicorn/protocols/http/httptools_impl.py: the timer is armed
in ``on_response_complete`` only), so a local server could have every socket
held by slow clients. Knative's
queue-proxy shields pods in a cluster; ``kzero serve`` on a laptop has no such
shield. The protocol class is uvicorn's own httptools one, which KServe's
server uses (httptools comes with ``uvicorn[standard]``), with a timer from
connection (or the first byte of a kept-alive connection's next request) to
the end of the headers.
"""

from __future__ import annotations

import asyncio
import logging

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

logger = logging.getLogger(__name__)


def with_header_timeout(timeout_s: float) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol, closing connections whose headers take over ``timeout_s``."""

    class HeaderTimeoutProtocol(HttpToolsProtocol):
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm_header_timer()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm_header_timer()  # a kept-alive connection's next request

        def on_headers_complete(self) -> None:
            self._disarm_header_timer()
            super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm_header_timer()
            super().connection_lost(exc)

        def _arm_header_timer(self) -> None:
            if self._header_timer is None:
                self._header_timer = self.loop.call_later(timeout_s, self._headers_too_slow)

        def _disarm_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_too_slow(self) -> None:
            self._header_timer = None
            logger.info("closing a connection whose request headers took over %gs", timeout_s)
            self.transport.close()

    return HeaderTimeoutProtocol
