"""Loading the engine, in the server's event loop or on a thread of its own; the warm-up.

``KzeroModel.start_engine`` awaits a ``LoadModel``, then runs a one-token
warm-up in the server's loop. Where the load runs is the assembly's choice
(predictor/model_start.py):

- ``BackgroundLoad``: the llama.cpp backend starts loading before KServe and the
  web stack are imported, on a thread and event loop of its own. Its load is C
  code (mapping the weights, allocating and clearing the KV cache), mostly on
  one thread and without the GIL, so on a second core it overlaps the imports,
  which are the longer part of a cold start.
- the plain coroutine, awaited in the server's loop: vLLM's ``AsyncLLM`` must be
  created in the loop that serves it.

The warm-up is not part of the background load: it is a decode on all of the
engine's threads (the CPU quota), which on a small pod would take the core the
imports run on. After the imports it takes about 20 ms here; during them, up to
150 ms, and it slows them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from predictor.backends.base import Backend, Prompt, SamplingOptions

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedModel:
    """A loaded engine, why it was chosen, and how long its load took."""

    backend: Backend
    reason: str
    load_s: float


# Fetches (if the model comes after the port), then loads the engine.
LoadModel = Callable[[], Awaitable[LoadedModel]]


class ModelFetchError(Exception):
    """A model fetched after the port opened could not be fetched or opened."""


async def load_backend(backend: Backend, reason: str) -> LoadedModel:
    """``Backend.load`` (the weights and the context), timed."""
    started = time.perf_counter()
    await backend.load()
    return LoadedModel(backend, reason, time.perf_counter() - started)


async def warm_up(backend: Backend) -> float:
    """One token through the real path pages the weights in and builds the compute
    graph, so the first user request does not pay for it. It bypasses
    GenerationService so it is not counted in request metrics. Returns its seconds."""
    started = time.perf_counter()
    ids = await asyncio.to_thread(backend.tokenize, "Hello")
    prompt = Prompt(text="Hello", token_ids=ids)
    async for _ in backend.generate(
        "warm-up", prompt, SamplingOptions(max_tokens=1, temperature=0.0)
    ):
        pass
    return time.perf_counter() - started


class BackgroundLoad:
    """``load()`` run at once on a daemon thread with its own event loop.

    ``result`` awaits it from any event loop. Awaiting it is safe to cancel: the
    load carries on (as a load in ``asyncio.to_thread`` would) and, since the
    thread is a daemon, never holds the process up on its way out.
    """

    def __init__(self, load: Callable[[], Coroutine[Any, Any, LoadedModel]]) -> None:
        self._future: concurrent.futures.Future[LoadedModel] = concurrent.futures.Future()
        # Running from the start: a cancelled await never cancels the future itself.
        self._future.set_running_or_notify_cancel()
        self._thread = threading.Thread(
            target=self._run, args=(load,), name="kzero-model-load", daemon=True
        )
        self._thread.start()

    def _run(self, load: Callable[[], Coroutine[Any, Any, LoadedModel]]) -> None:
        try:
            loaded = asyncio.run(load())
        except BaseException as exc:  # handed to whoever awaits the result
            self._future.set_exception(exc)
        else:
            self._future.set_result(loaded)

    async def result(self) -> LoadedModel:
        return await asyncio.wrap_future(self._future)

    def release(self) -> None:
        """For a server that will not run after all (a refused flag found after the load
        began): wait for the load to end and free what it loaded, so that no engine
        thread is cut off in C code while the interpreter exits."""
        try:
            loaded = self._future.result()
        except BaseException:
            return  # nothing was loaded
        asyncio.run(loaded.backend.shutdown())
