"""The worker-to-event-loop mailbox of the llama.cpp backend."""

from __future__ import annotations

import asyncio
import threading

from predictor.backends.base import GenerationChunk
from predictor.backends.llamacpp import LlamaCppBackend, _Mailbox, _Started


def chunk(text: str, finish_reason: str | None = None) -> GenerationChunk:
    return GenerationChunk(text=text, num_tokens=1, finish_reason=finish_reason)


async def test_items_posted_while_the_consumer_is_busy_arrive_together_in_order():
    mailbox = _Mailbox(asyncio.get_running_loop())
    posted = threading.Event()

    def worker() -> None:
        for i in range(50):
            mailbox.post(chunk(str(i)))
        posted.set()

    thread = threading.Thread(target=worker)
    thread.start()
    await asyncio.to_thread(posted.wait)
    thread.join()
    items = await mailbox.take()
    assert [item.text for item in items] == [str(i) for i in range(50)]


async def test_take_waits_for_a_post_from_another_thread():
    mailbox = _Mailbox(asyncio.get_running_loop())
    taker = asyncio.create_task(mailbox.take())
    await asyncio.sleep(0.01)
    assert not taker.done()
    threading.Thread(target=mailbox.post, args=(chunk("a"),)).start()
    assert [item.text for item in await asyncio.wait_for(taker, 5)] == ["a"]


async def test_every_item_is_delivered_exactly_once_across_many_takes():
    mailbox = _Mailbox(asyncio.get_running_loop())
    count = 2000

    def worker() -> None:
        for i in range(count):
            mailbox.post(chunk(str(i)))

    thread = threading.Thread(target=worker)
    thread.start()
    received: list[str] = []
    while len(received) < count:
        received += [item.text for item in await asyncio.wait_for(mailbox.take(), 5)]
    thread.join()
    assert received == [str(i) for i in range(count)]


def test_merge_joins_tokens_and_reports_the_start_first():
    started: list[str] = []
    merged = LlamaCppBackend._merge(
        [_Started(), chunk("Hel"), chunk("lo", "stop")], "r1", lambda: started.append("x")
    )
    assert started == ["x"]
    assert merged == GenerationChunk(text="Hello", num_tokens=2, finish_reason="stop")


def test_merge_of_only_a_start_marker_yields_nothing():
    assert LlamaCppBackend._merge([_Started()], "r1", None) is None
