"""The model's load on a thread of its own, awaited later by the server's loop; the warm-up."""

from __future__ import annotations

import asyncio
import threading

import pytest

from predictor.backends.base import BackendKind
from predictor.model_load import BackgroundLoad, LoadedModel, load_backend, warm_up
from predictor.model_start import LOADS_BEFORE_THE_SERVER
from tests.unit.scripted_backend import ScriptedBackend


class RecordingBackend(ScriptedBackend):
    """Records where it was loaded and warmed up; ``gate`` holds the load."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        super().__init__("warm")
        self.gate = gate
        self.load_thread = ""
        self.warmed_up = False
        self.shut_down = False

    async def load(self) -> None:
        self.load_thread = threading.current_thread().name
        if self.gate is not None:
            await asyncio.to_thread(self.gate.wait, 10)

    async def generate(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.warmed_up = True
        async for chunk in super().generate(*args, **kwargs):
            yield chunk

    async def shutdown(self) -> None:
        self.shut_down = True


async def test_the_load_runs_on_its_own_thread_and_any_loop_awaits_it():
    backend = RecordingBackend()
    background = BackgroundLoad(lambda: load_backend(backend, "why"))
    loaded = await background.result()
    assert isinstance(loaded, LoadedModel)
    assert (loaded.backend, loaded.reason) == (backend, "why")
    assert loaded.load_s >= 0
    assert backend.load_thread == "kzero-model-load"
    # The warm-up decodes on all the engine's threads: it waits for the server's loop.
    assert not backend.warmed_up


async def test_the_warm_up_sends_one_token_through_generate():
    backend = RecordingBackend()
    assert await warm_up(backend) >= 0
    assert backend.warmed_up


async def test_a_failed_load_raises_where_it_is_awaited():
    class Broken(RecordingBackend):
        async def load(self) -> None:
            raise RuntimeError("llama.cpp failed to load")

    background = BackgroundLoad(lambda: load_backend(Broken(), "why"))
    with pytest.raises(RuntimeError, match="failed to load"):
        await background.result()


async def test_a_cancelled_wait_leaves_the_load_running_to_its_end():
    gate = threading.Event()
    backend = RecordingBackend(gate)
    background = BackgroundLoad(lambda: load_backend(backend, "why"))
    waiting = asyncio.create_task(background.result())
    await asyncio.sleep(0.05)
    waiting.cancel()  # KzeroModel.stop during the load
    with pytest.raises(asyncio.CancelledError):
        await waiting
    gate.set()
    assert (await background.result()).backend is backend


def test_release_waits_for_the_load_then_frees_the_engine():
    gate = threading.Event()
    backend = RecordingBackend(gate)
    background = BackgroundLoad(lambda: load_backend(backend, "why"))
    threading.Timer(0.05, gate.set).start()
    background.release()  # a flag refused after the load began
    assert backend.load_thread and backend.shut_down


def test_only_engines_that_need_no_server_loop_load_before_the_server():
    # vLLM's AsyncLLM must be created in the loop that serves it.
    assert BackendKind.LLAMACPP in LOADS_BEFORE_THE_SERVER
    assert BackendKind.VLLM not in LOADS_BEFORE_THE_SERVER
