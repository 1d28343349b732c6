"""The one owner of the predictor's life: loading, ready, draining, failed; and the exit code.

Everything else only reads the state (``require_serving``, ``serving``) or
reports to it (``mark_ready``, ``fail``); the transitions and what follows them
happen here, in ``supervise``, so no other object keeps a copy of the state.

How the process stops:

- **SIGTERM** (Kubernetes scaling down): uvicorn's own handling closes the
  listening socket at once, so the queue-proxy's next request would be refused
  and readiness could not even say 503. Instead the port stays open, readiness
  turns false and new requests get 503 immediately; admitted ones get
  ``drain_timeout_s`` to finish, then the rest are cut off with an error, and
  only then is uvicorn told to exit. The process exits 0.
- **A dead engine**: everything in flight is cut off and the process exits 1,
  so that the kubelet restarts the container.

Either way uvicorn is stopped by calling its own signal handler, the one public
way to stop the ``uvicorn.Server`` that KServe's ``ModelServer`` keeps to itself.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import signal
from collections.abc import Callable
from types import FrameType
from typing import Any, Protocol

import uvicorn

from predictor.errors import Draining, EngineDead, NotReady, ServingError

logger = logging.getLogger(__name__)

# How often to look for uvicorn's handler while the server starts.
_HANDLER_POLL_S = 0.05

SignalHandler = Callable[[int, FrameType | None], Any]


class State(enum.Enum):
    LOADING = "loading"
    READY = "ready"
    DRAINING = "draining"
    FAILED = "failed"


class InFlight(Protocol):
    """The admitted requests, as the drain sees them (``GenerationService``)."""

    @property
    def in_flight(self) -> int: ...

    async def wait_idle(self) -> None: ...

    async def cut_off(self, error: Callable[[], ServingError]) -> None:
        """End every admitted request now with ``error()``."""
        ...


def _is_uvicorn_handler(handler: object) -> bool:
    # KServe runs a subclass of uvicorn.Server; its handle_exit is the handler.
    return isinstance(getattr(handler, "__self__", None), uvicorn.Server)


class Lifecycle:
    def __init__(self, model_name: str, *, drain_timeout_s: float) -> None:
        self.model_name = model_name
        self.drain_timeout_s = drain_timeout_s
        self._state = State.LOADING
        self.exit_code = 0
        # Set once a stop is decided (SIGTERM or failure); supervise() acts on it.
        self._stop = asyncio.Event()

    @property
    def serving(self) -> bool:
        return self._state is State.READY

    @property
    def failed(self) -> bool:
        return self._state is State.FAILED

    def require_serving(self) -> None:
        """Raise the reason this replica takes no request now, if any."""
        if self._state is State.READY:
            return
        if self._state is State.DRAINING:
            raise Draining()
        if self._state is State.FAILED:
            raise EngineDead()
        raise NotReady(self.model_name)

    def mark_ready(self) -> None:
        """The model is loaded and warmed up (ignored if stopping began meanwhile)."""
        if self._state is State.LOADING:
            self._state = State.READY

    def fail(self, reason: str) -> None:
        """The engine is dead, or the model never loaded: cut off everything, exit 1."""
        if self._state is not State.FAILED:
            logger.error("engine failed: %s; exiting so Kubernetes restarts the container", reason)
        self._state = State.FAILED
        self.exit_code = 1
        self._stop.set()

    def request_drain(self) -> None:
        """SIGTERM, or KServe's stop: new requests get 503 from now on."""
        if self._state is not State.FAILED:
            self._state = State.DRAINING
        self._stop.set()

    async def supervise(self, work: InFlight) -> None:
        """Own SIGTERM once uvicorn is up; when a stop is decided, carry it out.

        Runs for the life of the server, next to it (``KzeroModel.start_engine``).
        """
        uvicorn_exit = await self._take_over_sigterm()
        await self._stop.wait()
        if self._state is State.FAILED:
            await work.cut_off(EngineDead)
        else:
            logger.info(
                "SIGTERM: not ready; draining %d request(s) for up to %gs",
                work.in_flight,
                self.drain_timeout_s,
            )
            try:
                await asyncio.wait_for(work.wait_idle(), self.drain_timeout_s)
            except TimeoutError:
                logger.warning(
                    "drain timeout: ending %d unfinished request(s) with 503", work.in_flight
                )
                await work.cut_off(Draining)
        # Back to uvicorn's handler, so a second SIGTERM still forces the exit.
        signal.signal(signal.SIGTERM, uvicorn_exit)
        uvicorn_exit(signal.SIGTERM, None)

    async def _take_over_sigterm(self) -> SignalHandler:
        """Wait for uvicorn's SIGTERM handler, put ours on top; return uvicorn's.

        KServe starts the engine and uvicorn side by side; uvicorn installs its
        handlers when it starts serving, replacing any set before.
        """
        # Nothing signals "handler installed", so poll; it takes milliseconds.
        while not _is_uvicorn_handler(signal.getsignal(signal.SIGTERM)):  # noqa: ASYNC110
            await asyncio.sleep(_HANDLER_POLL_S)
        uvicorn_exit: SignalHandler = signal.getsignal(signal.SIGTERM)  # type: ignore[assignment]
        loop = asyncio.get_running_loop()

        def on_sigterm(signum: int, frame: FrameType | None) -> None:
            # A signal handler runs between bytecodes: only schedule work here.
            loop.call_soon_threadsafe(self.request_drain)

        signal.signal(signal.SIGTERM, on_sigterm)
        return uvicorn_exit
