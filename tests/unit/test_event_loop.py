"""KServe's --event-loop flag, applied before ModelServer starts its loop."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import uvloop

from predictor.assembly import install_event_loop


@pytest.fixture(autouse=True)
def restore_policy() -> Iterator[None]:
    policy = asyncio.get_event_loop_policy()
    yield
    asyncio.set_event_loop_policy(policy)


async def _running_loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


@pytest.mark.parametrize("choice", ["auto", "uvloop"])
def test_auto_and_uvloop_run_on_uvloop(choice: str):
    assert install_event_loop(choice) == "uvloop"
    # ModelServer.start asks for the current loop before asyncio.run.
    assert isinstance(asyncio.get_event_loop(), uvloop.Loop)
    assert isinstance(asyncio.run(_running_loop()), uvloop.Loop)


def test_asyncio_keeps_the_standard_loop():
    assert install_event_loop("asyncio") == "asyncio"
    assert not isinstance(asyncio.run(_running_loop()), uvloop.Loop)
