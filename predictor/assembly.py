"""Wiring: settings -> model plan -> backend -> service, lifecycle and KServe model -> server.

Nothing here decides anything; each step is the named function of its own
module, called in one direction:

    plan_model (model_plan) -> open_before_port (cache, backends.open_backend)
      or, for a remote model with a known backend, open_after_port in start_engine
    -> GenerationService + Lifecycle -> KzeroModel -> routes on KServe's app -> ModelServer
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
from collections.abc import Callable

from predictor.admission import Admission
from predictor.auth import configured_admin_key_hashes, configured_key_hashes
from predictor.backends.base import Backend
from predictor.backends.open import OpenedBackend
from predictor.generation import GenerationService, RequestLimits
from predictor.header_timeout import with_header_timeout
from predictor.lifecycle import Lifecycle
from predictor.metrics import COLD_START, initialise_series
from predictor.model import KzeroModel, OpenAfterPort
from predictor.model_plan import open_after_port, open_before_port, plan_model
from predictor.process_clock import seconds_since_process_start
from predictor.settings import Settings

logger = logging.getLogger(__name__)

# Wraps the engine object before it loads; the integration tests inject faults
# and hold loads through it, so that they run the real server otherwise.
BackendWrapper = Callable[[Backend], Backend]


def build_predictor(
    settings: Settings, *, wrap_backend: BackendWrapper | None = None
) -> KzeroModel:
    """The KServe model for the settings, with kzero's routes mounted on KServe's app.

    A local model, or a remote one whose files decide the backend, is opened
    here, before the port opens: raises ``BackendLoadError`` when no engine can
    serve it, ``CacheError`` when its bytes cannot be fetched or verified. A
    remote model with a known backend is fetched by ``start_engine`` instead,
    and those errors end the process there.
    """
    from kserve import model_server as kserve_model_server

    from predictor.app import mount

    imports_done = seconds_since_process_start()
    plan = plan_model(settings)
    if plan.fetched_after_port_opens:
        assert plan.name is not None and plan.backend is not None
        model_name, backend_name = plan.name, plan.backend.value
        backend: Backend | None = None
        reason = "fetched after the port opened"
        opener: OpenAfterPort | None = functools.partial(open_after_port, plan, settings)
        logger.info(
            "serving %s as '%s' with %s once it is fetched",
            plan.uri.redacted(), model_name, backend_name,
        )  # fmt: skip
    else:
        opened = open_before_port(plan, settings)
        model_name, backend_name = opened.model_name, opened.kind.value
        backend, reason, opener = opened.backend, opened.reason, None
    initialise_series(model_name, backend_name)
    COLD_START.labels("process_start", model_name, backend_name).observe(imports_done)

    if wrap_backend is not None:
        backend, opener = _wrapped(backend, opener, wrap_backend)
    lifecycle = Lifecycle(model_name, drain_timeout_s=settings.drain_timeout_s)
    service = GenerationService(
        backend,
        backend_name=backend_name,
        model_name=model_name,
        limits=request_limits(settings),
        # Running slots follow the engine's parallelism once it is loaded.
        admission=Admission(max_running=1, max_queued=settings.max_queued_requests),
        lifecycle=lifecycle,
    )
    mount(
        kserve_model_server.app,
        service,
        settings,
        configured_key_hashes(settings),
        configured_admin_key_hashes(settings),
    )
    return KzeroModel(
        service,
        lifecycle,
        selection_reason=reason,
        max_instances=settings.max_predict_instances,
        open_after_port=opener,
    )


def _wrapped(
    backend: Backend | None, opener: OpenAfterPort | None, wrap: BackendWrapper
) -> tuple[Backend | None, OpenAfterPort | None]:
    if opener is None:
        assert backend is not None
        return wrap(backend), None

    async def open_and_wrap() -> OpenedBackend:
        opened = await opener()
        return dataclasses.replace(opened, backend=wrap(opened.backend))

    return None, open_and_wrap


def request_limits(settings: Settings) -> RequestLimits:
    return RequestLimits(
        max_tokens_cap=settings.max_tokens_cap,
        max_prompt_tokens=settings.max_prompt_tokens,
        max_stop_sequences=settings.max_stop_sequences,
        max_stop_length=settings.max_stop_length,
        request_timeout_s=settings.request_timeout_s,
    )


def install_event_loop(choice: str) -> str:
    """Apply KServe's ``--event_loop`` (auto, asyncio or uvloop); returns the loop used.

    ``ModelServer.start`` runs ``asyncio.run`` itself, so uvicorn's own loop
    setting never takes effect; the policy has to be in place beforehand. uvloop
    spends less CPU per streamed token than asyncio's loop, and on a small CPU
    pod that CPU is taken from the decode threads (docs/benchmarks.md measures it).
    """
    if choice == "asyncio":
        return "asyncio"
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    # ModelServer.start calls get_event_loop() before asyncio.run, and uvloop's
    # policy, unlike the default one, creates no loop implicitly.
    asyncio.set_event_loop(asyncio.new_event_loop())
    return "uvloop"


def serve_model(
    model: KzeroModel,
    *,
    host: str,
    header_timeout_s: float,
    http_port: int,
    enable_grpc: bool,
    event_loop: str,
) -> int:
    """Serve until stopped, then return the exit code: 0 after a drain, 1 if the engine died.

    The model loads in the background while the port is open.
    """
    from kserve import ModelServer

    class HostModelServer(ModelServer):
        """KServe 0.21.0 always binds 0.0.0.0 and takes uvicorn's default protocol
        (kserve/protocol/rest/server.py, ``RESTServer.__init__``: ``uvicorn.Config(
        host="0.0.0.0", ...)`` without ``http``). ``ModelServer.start`` builds
        ``self._rest_server``, then runs ``asyncio.run(self._serve())``
        (kserve/model_server.py), and uvicorn 0.55.0 reads ``host`` and ``http``
        only when the server starts (``Config.load``, ``Server.startup``), so
        both are set here, just before."""

        async def _serve(self) -> None:
            if self._rest_server is not None:
                self._rest_server.config.host = host
                self._rest_server.config.http = with_header_timeout(header_timeout_s)
            await super()._serve()

    logger.info("event loop: %s", install_event_loop(event_loop))
    HostModelServer(http_port=http_port, enable_grpc=enable_grpc).start([model])
    return model.lifecycle.exit_code
