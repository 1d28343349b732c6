"""Admission control: how many requests may run and wait, and when to refuse one.

A request is admitted after it passed validation and before its response
starts, so a full server refuses it (the doors answer 429 with ``Retry-After``)
while the door can still choose the status. Admitted requests take one of ``max_running`` engine
slots in arrival order; the rest wait. Bounding the queue turns a burst into
fast, retryable refusals instead of requests that time out after minutes.

Everything here runs on the event loop, so plain counters need no lock.
"""

from __future__ import annotations

import asyncio
import collections

from predictor.errors import Overloaded


class Ticket:
    """One admitted request: holds a queue place, then an engine slot; release is idempotent."""

    def __init__(self, admission: Admission) -> None:
        self._admission = admission
        self._running = False
        self._released = False

    async def run_slot(self) -> None:
        """Wait, in arrival order, until an engine slot is free."""
        await self._admission._acquire_slot(self)
        self._running = True

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        self._admission._release(self)

    @property
    def running(self) -> bool:
        return self._running


class Admission:
    """At most ``max_running`` requests run and ``max_queued`` wait; the next one is refused."""

    def __init__(self, *, max_running: int, max_queued: int) -> None:
        self.max_running = max_running
        self.max_queued = max_queued
        self._running = 0
        self._in_flight = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._idle = asyncio.Event()
        self._idle.set()

    def resize(self, max_running: int) -> None:
        """Set the running slots to the engine's parallelism, known once it has loaded."""
        self.max_running = max_running
        self._wake_next()

    @property
    def in_flight(self) -> int:
        """Admitted requests not yet released: running plus waiting."""
        return self._in_flight

    def admit(self) -> Ticket:
        """A ticket for one more request; ``Overloaded`` when full."""
        if self._in_flight >= self.max_running + self.max_queued:
            raise Overloaded(
                f"the server is at its limit of {self.max_running} running and "
                f"{self.max_queued} queued requests; retry shortly"
            )
        self._in_flight += 1
        self._idle.clear()
        return Ticket(self)

    async def wait_idle(self) -> None:
        """Return once no admitted request is left."""
        await self._idle.wait()

    async def _acquire_slot(self, ticket: Ticket) -> None:
        if self._running < self.max_running and not self._waiters:
            self._running += 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            # The slot is handed over by _release, already counted as ours.
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                # Handed a slot in the same instant we were cancelled: pass it on.
                self._running -= 1
                self._wake_next()
            elif waiter in self._waiters:  # _wake_next may have dropped it already
                self._waiters.remove(waiter)
            raise

    def _release(self, ticket: Ticket) -> None:
        self._in_flight -= 1
        if ticket.running:
            self._running -= 1
            self._wake_next()
        if self._in_flight == 0:
            self._idle.set()

    def _wake_next(self) -> None:
        while self._waiters and self._running < self.max_running:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._running += 1
                waiter.set_result(None)
