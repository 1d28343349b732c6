"""The model's start, before the server exists: plan it, open it, start loading it.

This is the first stage of ``kzero serve`` (predictor/cli.py): it needs neither
KServe nor the web stack, so a load that may run on a thread of its own
(llama.cpp's: C code behind plain calls) starts here and overlaps their imports,
the longer part of a cold start. ``assembly.build_predictor`` takes the
``StartedModel`` once they are imported.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from predictor.backends.base import Backend, BackendKind
from predictor.model_load import (
    BackgroundLoad,
    LoadedModel,
    LoadModel,
    ModelFetchError,
    load_backend,
)
from predictor.model_plan import ModelPlan, open_after_port, open_before_port, plan_model
from predictor.settings import Settings

logger = logging.getLogger(__name__)

# Wraps the engine object before it loads; the integration tests inject faults
# and hold loads through it, so that they run the real server otherwise.
BackendWrapper = Callable[[Backend], Backend]

# Engines whose load may start before the server's event loop exists, on a
# thread and loop of its own. vLLM's AsyncLLM belongs to the loop that serves
# it (DESIGN.md), so it loads in KzeroModel.start_engine, in the server's loop.
LOADS_BEFORE_THE_SERVER = frozenset({BackendKind.LLAMACPP})


@dataclass(frozen=True)
class StartedModel:
    """The model as the server needs it: its names, and its load, under way if it may be."""

    name: str
    backend_name: str
    # None for a model fetched after the port opens, until it is loaded.
    backend: Backend | None
    reason: str
    # What KzeroModel.start_engine awaits.
    load: LoadModel
    # The load on its own thread, when it runs there; None when the server's loop runs it.
    background: BackgroundLoad | None

    def release(self) -> None:
        """For a server that will not run after all: end the load already under way."""
        if self.background is not None:
            self.background.release()


def start_model(settings: Settings, *, wrap_backend: BackendWrapper | None = None) -> StartedModel:
    """Plan the model, open it if its files decide the engine, and start loading it.

    A local model, or a remote one whose files decide the backend, is opened
    here, before the port opens: raises ``BackendLoadError`` when no engine can
    serve it, ``CacheError`` when its bytes cannot be fetched or verified. A
    remote model with a known backend is fetched by the load instead, and those
    errors end the process once the server runs (``ModelFetchError``).
    """
    wrap = wrap_backend or _unwrapped
    plan = plan_model(settings)
    load: Callable[[], Coroutine[Any, Any, LoadedModel]]
    if plan.fetched_after_port_opens:
        assert plan.name is not None and plan.backend is not None
        name, kind, backend = plan.name, plan.backend, None
        reason = "fetched after the port opened"
        load = functools.partial(_fetch_and_load, plan, settings, wrap)
        logger.info(
            "serving %s as '%s' with %s once it is fetched", plan.uri.redacted(), name, kind.value
        )
    else:
        opened = open_before_port(plan, settings)
        name, kind, reason = opened.model_name, opened.kind, opened.reason
        backend = wrap(opened.backend)
        load = functools.partial(load_backend, backend, reason)
    if kind in LOADS_BEFORE_THE_SERVER:
        background = BackgroundLoad(load)
        return StartedModel(name, kind.value, backend, reason, background.result, background)
    return StartedModel(name, kind.value, backend, reason, load, None)


def _unwrapped(backend: Backend) -> Backend:
    return backend


async def _fetch_and_load(plan: ModelPlan, settings: Settings, wrap: BackendWrapper) -> LoadedModel:
    try:
        opened = await open_after_port(plan, settings)
    except Exception as exc:
        raise ModelFetchError(str(exc)) from exc
    return await load_backend(wrap(opened.backend), opened.reason)
