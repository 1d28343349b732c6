"""Wiring: the started model -> service, lifecycle and KServe model -> routes -> server.

Nothing here decides anything; each step is the named function of its own
module, called in one direction, in two stages:

    model_start.start_model, before KServe and the web stack are imported:
      plan_model (model_plan) -> open_before_port (cache, backends.open_backend)
        or, for a remote model with a known backend, open_after_port in the load
      -> the engine's load: on a thread of its own from then on (llama.cpp), or
         later in the server's loop (vLLM); the warm-up always in the server's loop
    build_predictor and serve_model here, once they are imported:
      GenerationService + Lifecycle -> KzeroModel -> routes on KServe's app -> ModelServer
"""

from __future__ import annotations

import asyncio
import logging

from kserve import model_server as kserve_model_server
from kserve.model_server import ModelServer

from predictor.admission import Admission
from predictor.app import mount
from predictor.auth import configured_admin_key_hashes, configured_key_hashes
from predictor.generation import GenerationService, RequestLimits
from predictor.header_timeout import with_header_timeout
from predictor.lifecycle import Lifecycle
from predictor.metrics import COLD_START, initialise_series
from predictor.model import WARM_UP_PHASE, KzeroModel
from predictor.model_start import StartedModel
from predictor.process_clock import seconds_since_process_start
from predictor.settings import Settings
from predictor.start_up import start_up_done

logger = logging.getLogger(__name__)


def build_predictor(settings: Settings, started: StartedModel) -> KzeroModel:
    """The KServe model for the started model, with kzero's routes mounted on KServe's app.

    Called once KServe's server and the web stack are imported: the
    ``process_start`` phase ends here. Raises ``ApiKeyConfigError`` for an
    unreadable key file.
    """
    imports_done = seconds_since_process_start()
    labels = (started.name, started.backend_name)
    initialise_series(*labels)
    COLD_START.labels(WARM_UP_PHASE, *labels)  # at 0 until the warm-up ran
    COLD_START.labels("process_start", *labels).observe(imports_done)

    lifecycle = Lifecycle(started.name, drain_timeout_s=settings.drain_timeout_s)
    service = GenerationService(
        started.backend,
        backend_name=started.backend_name,
        model_name=started.name,
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
        selection_reason=started.reason,
        max_instances=settings.max_predict_instances,
        load=started.load,
    )


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
    start_up_done()
    HostModelServer(http_port=http_port, enable_grpc=enable_grpc).start([model])
    return model.lifecycle.exit_code
