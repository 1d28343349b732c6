"""Admission: running slots in arrival order, a bounded queue, 429 beyond it."""

from __future__ import annotations

import asyncio

import pytest

from predictor.admission import Admission
from predictor.errors import Overloaded


async def test_beyond_running_plus_queued_is_overloaded_with_retry_after():
    admission = Admission(max_running=1, max_queued=2)
    tickets = [admission.admit() for _ in range(3)]
    with pytest.raises(Overloaded) as caught:
        admission.admit()
    assert caught.value.outcome == "rejected"
    assert caught.value.retry_after >= 1
    tickets[0].release()
    admission.admit().release()


async def test_slots_go_in_arrival_order():
    admission = Admission(max_running=1, max_queued=3)
    order: list[int] = []
    first = admission.admit()
    await first.run_slot()

    async def run(index: int) -> None:
        ticket = admission.admit()
        await ticket.run_slot()
        order.append(index)
        ticket.release()

    waiting = [asyncio.create_task(run(index)) for index in range(3)]
    await asyncio.sleep(0)
    assert order == []
    first.release()
    await asyncio.gather(*waiting)
    assert order == [0, 1, 2]


async def test_a_waiter_cancelled_after_being_handed_a_slot_passes_it_on():
    admission = Admission(max_running=1, max_queued=2)
    holder = admission.admit()
    await holder.run_slot()
    second, third = admission.admit(), admission.admit()
    second_wait = asyncio.create_task(second.run_slot())
    third_wait = asyncio.create_task(third.run_slot())
    await asyncio.sleep(0)
    holder.release()  # hands the slot to second...
    second_wait.cancel()  # ...which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await second_wait
    second.release()
    await asyncio.wait_for(third_wait, 1)
    assert third.running
    third.release()
    assert admission.in_flight == 0


async def test_a_cancelled_waiter_leaves_the_queue():
    admission = Admission(max_running=1, max_queued=2)
    holder = admission.admit()
    await holder.run_slot()
    waiter = admission.admit()
    task = asyncio.create_task(waiter.run_slot())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    waiter.release()
    holder.release()
    late = admission.admit()
    await asyncio.wait_for(late.run_slot(), 1)
    late.release()


async def test_wait_idle_returns_when_the_last_ticket_is_released_and_release_is_idempotent():
    admission = Admission(max_running=2, max_queued=0)
    ticket = admission.admit()
    idle = asyncio.create_task(admission.wait_idle())
    await asyncio.sleep(0)
    assert not idle.done()
    ticket.release()
    ticket.release()
    await asyncio.wait_for(idle, 1)
    assert admission.in_flight == 0
