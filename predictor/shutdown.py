"""How the predictor stops: a graceful drain on SIGTERM, a non-zero exit when the engine dies.

Kubernetes sends SIGTERM and, after ``terminationGracePeriodSeconds``, SIGKILL.
uvicorn's own SIGTERM handling closes the listening socket at once, so the
queue-proxy's next request would be refused and readiness could not even say
503. Instead the drain keeps the port open: readiness turns false and new
requests get 503 immediately, admitted ones get ``drain_timeout_s`` to finish,
and only then is uvicorn told to exit (the process exits 0).

A dead engine is the other way out: the process must exit non-zero so the
kubelet restarts the container. Either way uvicorn is stopped by calling its
own signal handler, the one public way to stop the ``uvicorn.Server`` that
KServe's ``ModelServer`` creates and keeps to itself.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from types import FrameType
from typing import Any

import uvicorn

from predictor.generation import GenerationService
from predictor.openai.errors import EngineDead, ShuttingDown

logger = logging.getLogger(__name__)

# How often to look for uvicorn's handler while the server starts.
_HANDLER_POLL_S = 0.05

SignalHandler = Callable[[int, FrameType | None], Any]


def _is_uvicorn_handler(handler: object) -> bool:
    # KServe runs a subclass of uvicorn.Server; its handle_exit is the handler.
    return isinstance(getattr(handler, "__self__", None), uvicorn.Server)


class Shutdown:
    """Owns SIGTERM once uvicorn is up; decides the exit code."""

    def __init__(self, service: GenerationService, *, drain_timeout_s: float) -> None:
        self.service = service
        self.drain_timeout_s = drain_timeout_s
        self.exit_code = 0
        self._uvicorn_exit: SignalHandler | None = None
        self._installed = asyncio.Event()
        self._stopping = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def install(self) -> None:
        """Take over SIGTERM as soon as uvicorn has installed its handler.

        KServe starts the engine and uvicorn side by side; uvicorn installs its
        handlers when it starts serving, replacing any set before, so we wait
        for it and put ours on top.
        """
        # Nothing signals "handler installed", so poll; it takes milliseconds.
        while not _is_uvicorn_handler(signal.getsignal(signal.SIGTERM)):  # noqa: ASYNC110
            await asyncio.sleep(_HANDLER_POLL_S)
        self._uvicorn_exit = signal.getsignal(signal.SIGTERM)  # type: ignore[assignment]
        loop = asyncio.get_running_loop()

        def on_sigterm(signum: int, frame: FrameType | None) -> None:
            # A signal handler runs between bytecodes: only schedule work here.
            loop.call_soon_threadsafe(self._spawn, self.drain())

        signal.signal(signal.SIGTERM, on_sigterm)
        self._installed.set()

    def _spawn(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """SIGTERM: refuse new work, let admitted requests finish, then stop uvicorn."""
        if self._stopping:
            return
        self._stopping = True
        admission = self.service.admission
        self.service.begin_drain()
        logger.info(
            "SIGTERM: not ready; draining %d request(s) for up to %gs",
            admission.in_flight,
            self.drain_timeout_s,
        )
        try:
            await asyncio.wait_for(admission.wait_idle(), self.drain_timeout_s)
        except TimeoutError:
            logger.warning(
                "drain timeout: ending %d unfinished request(s) with 503", admission.in_flight
            )
            await self.service.cut_off(ShuttingDown)
        await self._stop_uvicorn()

    def fail(self, reason: str) -> None:
        """The engine is dead: answer everything in flight with 503 and exit non-zero."""
        if self.exit_code == 0:
            logger.error("engine failed: %s; exiting so Kubernetes restarts the container", reason)
        self.exit_code = 1
        self.service.mark_failed()
        if not self._stopping:
            self._stopping = True
            self._spawn(self._fail_and_stop())

    async def _fail_and_stop(self) -> None:
        await self.service.cut_off(EngineDead)
        await self._stop_uvicorn()

    async def _stop_uvicorn(self) -> None:
        await self._installed.wait()
        handler = self._uvicorn_exit
        assert handler is not None
        # Back to uvicorn's handler, so a second SIGTERM still forces the exit.
        signal.signal(signal.SIGTERM, handler)
        handler(signal.SIGTERM, None)
