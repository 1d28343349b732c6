"""Assemble the predictor: pick the backend, mount the OpenAI router, start KServe.

kzero's OpenAI router is included on ``kserve.model_server.app`` (the FastAPI app
KServe's ``ModelServer`` serves) before ``ModelServer.start``, so one port (8080)
carries KServe's ``/v1/models/<name>``, ``/v2/health/*``, ``/metrics`` and
``:predict`` next to ``/openai/v1/*`` and ``/v1/*``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING

from predictor.admission import Admission
from predictor.auth import ApiKeyMiddleware, configured_key_hashes
from predictor.backends.base import Backend, BackendKind, BackendLoadError
from predictor.backends.select import BackendChoice, ModelLocation, choose_backend, locate_model
from predictor.cache.uri import parse_model_uri
from predictor.cpu_quota import usable_cpu_count
from predictor.generation import GenerationService, RequestLimits
from predictor.metrics import COLD_START
from predictor.model_source import (
    fetched_after_port_opens,
    model_source,
    record_resolution,
    resolve_in_background,
    resolve_model,
)
from predictor.process_clock import seconds_since_process_start
from predictor.settings import Settings
from predictor.shutdown import Shutdown

if TYPE_CHECKING:
    from predictor.model import BackendFetch, KzeroModel

logger = logging.getLogger(__name__)


def derive_model_name(path: Path) -> str:
    """``SmolLM2-135M-Instruct.Q4_1.gguf`` -> ``SmolLM2-135M-Instruct.Q4_1``; a directory keeps its name."""
    name = path.name[: -len(".gguf")] if path.name.endswith(".gguf") else path.name
    # Split GGUF shards share one model: drop the "-00001-of-00003" suffix.
    return re.sub(r"-\d{5}-of-\d{5}$", "", name)


# vLLM's own default max_num_seqs, when --max_running_requests is not set. The
# llama.cpp backend derives its default from the model and the CPU quota.
VLLM_DEFAULT_MAX_NUM_SEQS = 256


def create_backend(
    choice: BackendChoice,
    location: ModelLocation,
    settings: Settings,
    model_name: str,
) -> Backend:
    """The engine object for the choice; nothing heavy is imported or loaded yet."""
    if choice.kind is BackendKind.VLLM:
        from predictor.backends.vllm import VllmBackend

        return VllmBackend(
            str(location.path),
            max_model_len=settings.n_ctx,
            gpu_memory_utilization=settings.gpu_memory_utilization,
            enforce_eager=settings.enforce_eager,
            dtype=settings.dtype,
            served_model_name=model_name,
            max_num_seqs=settings.max_running_requests or VLLM_DEFAULT_MAX_NUM_SEQS,
        )
    from predictor.backends.llamacpp import LlamaCppBackend

    return LlamaCppBackend(
        location.path,
        n_ctx=settings.n_ctx,
        n_threads=settings.n_threads or usable_cpu_count(),
        n_batch=settings.n_batch,
        n_parallel=settings.max_running_requests,
    )


def build_model(settings: Settings) -> KzeroModel:
    """Pick the backend and wire the model, its service and the OpenAI routes into KServe's app.

    A local model, or a remote one whose files decide the backend, is resolved
    here, before the port opens: raises ``BackendLoadError`` when no engine can
    serve it, ``CacheError`` when its bytes cannot be fetched or verified. A
    remote model with a known backend is fetched by ``start_engine`` instead,
    and those errors end the process there.
    """
    from kserve import model_server as kserve_model_server

    from predictor.model import KzeroModel
    from predictor.openai.errors import OpenAIError, openai_error_handler
    from predictor.openai.router import create_openai_router
    from predictor.openai.serving import OpenAIServing

    imports_done = seconds_since_process_start()
    source = parse_model_uri(model_source(settings))
    planned = fetched_after_port_opens(settings, source)
    backend: Backend | None = None
    fetch: BackendFetch | None = None
    if planned is None:
        resolution = resolve_model(settings)
        location = locate_model(resolution.path)
        choice = choose_backend(settings.backend, location)
        model_name = settings.model_name or derive_model_name(location.path)
        record_resolution(resolution, model_name, choice.kind.value)
        backend = create_backend(choice, location, settings, model_name)
        backend_name, reason = choice.kind.value, choice.reason
        logger.info(
            "serving %s as '%s' with %s: %s", location.path, model_name, backend_name, reason
        )
    else:
        model_name = settings.model_name or derive_model_name(Path(source.file_name()))
        backend_name, reason = planned.value, "fetched after the port opened"
        fetch = functools.partial(fetch_backend, settings, model_name, planned)
        logger.info(
            "serving %s as '%s' with %s once it is fetched",
            source.redacted(),
            model_name,
            backend_name,
        )
    COLD_START.labels("process_start", model_name, backend_name).observe(imports_done)

    key_hashes = configured_key_hashes(settings)
    service = GenerationService(
        backend,
        backend_name=backend_name,
        model_name=model_name,
        limits=request_limits(settings),
        # Running slots follow the engine's parallelism once it is loaded.
        admission=Admission(max_running=1, max_queued=settings.max_queued_requests),
    )
    app = kserve_model_server.app
    app.add_exception_handler(OpenAIError, openai_error_handler)
    app.include_router(
        create_openai_router(OpenAIServing(service), max_request_bytes=settings.max_request_bytes)
    )
    if key_hashes:
        app.add_middleware(
            ApiKeyMiddleware,
            key_hashes=key_hashes,
            guard_health=settings.auth_health,
            guard_metrics=settings.auth_metrics,
        )
        logger.info("API keys: %d configured; inference routes need a Bearer key", len(key_hashes))
    shutdown = Shutdown(service, drain_timeout_s=settings.drain_timeout_s)
    return KzeroModel(
        model_name, service, selection_reason=reason, shutdown=shutdown, fetch_backend=fetch
    )


async def fetch_backend(
    settings: Settings, model_name: str, planned: BackendKind
) -> tuple[Backend, str]:
    """Fetch a remote model after the port opened; its backend and why it was chosen.

    Raises ``CacheError`` when the bytes cannot be fetched, ``BackendLoadError``
    when the files are not what the planned backend serves.
    """
    resolution = await resolve_in_background(settings, model_name, planned.value)
    location = await asyncio.to_thread(locate_model, resolution.path)
    choice = choose_backend(settings.backend, location)
    if choice.kind is not planned:
        raise BackendLoadError(
            f"{location.path} needs {choice.kind.value}, but the metrics already name "
            f"{planned.value}: give --backend {choice.kind.value}"
        )
    logger.info(
        "fetched %s; serving it with %s: %s", location.path, choice.kind.value, choice.reason
    )
    return create_backend(choice, location, settings, model_name), choice.reason


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


def run(model: KzeroModel, *, http_port: int, enable_grpc: bool, event_loop: str) -> int:
    """Serve until stopped, then return the exit code: 0 after a drain, 1 if the engine died.

    The model loads in the background while the port is open.
    """
    from kserve import ModelServer

    logger.info("event loop: %s", install_event_loop(event_loop))
    ModelServer(http_port=http_port, enable_grpc=enable_grpc).start([model])
    return model.shutdown.exit_code
