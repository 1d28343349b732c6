"""Where the served model comes from, and how it becomes an engine object.

The source is ``--model`` (``KZERO_MODEL``), else KServe's ``STORAGE_URI``,
else the bundled default; it is parsed once, into a ``ModelPlan``. Local paths
are served in place; remote URIs go through the model cache, so a pod that
scales from zero finds them on the volume. Then ``backends.open_backend``
checks the files and builds the engine.

A remote model whose backend is known from the settings or the URI alone is
fetched after the port opens (``ModelPlan.fetched_after_port_opens``): the
download may take minutes, and meanwhile ``/metrics`` shows the cache miss and
readiness answers 503, instead of a pod that cannot be scraped. (The download
is part of the model's load, which for llama.cpp starts on a thread of its own
while the server is still being imported: the port never waits for it.)
Everything else is opened before the port, so a bad model crash-loops with one
line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar, cast

from predictor.backends.base import BackendKind, BackendLoadError
from predictor.backends.open import OpenedBackend, derive_model_name, open_backend
from predictor.cache.config import default_cache_dir
from predictor.cache.store import ModelCache, Resolution
from predictor.cache.uri import ModelURI, parse_model_uri
from predictor.default_model import default_model_path
from predictor.metrics import CACHE_DOWNLOAD_BYTES, CACHE_LOOKUPS, COLD_START
from predictor.settings import Settings

logger = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class ModelPlan:
    """The model to serve, as far as it is known before its bytes are."""

    uri: ModelURI
    # --model_name; else, for a model fetched after the port opens, derived from
    # the URI (the routes need it before the file exists); else None, and the
    # name comes from the file once it is located.
    name: str | None
    # Known before the bytes (the settings, or a URI naming a .gguf): then a
    # remote model is fetched after the port opens. None: the files decide.
    backend: BackendKind | None

    @property
    def fetched_after_port_opens(self) -> bool:
        return self.uri.is_remote and self.backend is not None


def model_source(settings: Settings) -> str:
    return settings.model or os.environ.get("STORAGE_URI") or str(default_model_path())


def plan_model(settings: Settings) -> ModelPlan:
    """Parse the model source once. Raises ``CacheError`` for a URI kzero refuses."""
    uri = parse_model_uri(model_source(settings))
    backend = _backend_known_up_front(settings, uri)
    name = settings.model_name
    if name is None and uri.is_remote and backend is not None:
        name = derive_model_name(Path(uri.file_name()))
    return ModelPlan(uri, name, backend)


def _backend_known_up_front(settings: Settings, uri: ModelURI) -> BackendKind | None:
    """The backend labels every metric, the cache's included, so it must be known
    before the lookup is exported: from ``--backend``, or from a URI that names a
    GGUF file."""
    if settings.backend is not BackendKind.AUTO:
        return settings.backend
    if uri.is_remote and not uri.is_archive() and uri.file_name().endswith(".gguf"):
        return BackendKind.LLAMACPP
    return None


def open_before_port(plan: ModelPlan, settings: Settings) -> OpenedBackend:
    """Fetch (if needed) and open a model whose files decide its backend.

    Raises ``CacheError`` when the bytes cannot be fetched or verified,
    ``BackendLoadError`` when no engine can serve them.
    """
    resolution = _resolve(plan.uri, settings)
    opened = open_backend(resolution.path, settings, model_name=plan.name)
    _record_resolution(resolution, opened.model_name, opened.kind.value)
    return opened


async def open_after_port(plan: ModelPlan, settings: Settings) -> OpenedBackend:
    """Fetch a remote model in the background, then open it with the planned backend.

    The miss is exported as soon as this process starts to download.
    """
    assert plan.name is not None and plan.backend is not None
    name, backend = plan.name, plan.backend.value
    resolution = await _in_daemon_thread(
        lambda: _resolve(plan.uri, settings, lambda: _record_lookup("miss", name, backend))
    )
    # A miss is exactly a download this process started: exported then already.
    _record_resolution(resolution, name, backend, lookup_recorded=resolution.result == "miss")
    opened = await asyncio.to_thread(open_backend, resolution.path, settings, model_name=name)
    if opened.kind is not plan.backend:
        raise BackendLoadError(
            f"{opened.path} needs {opened.kind.value}, but the metrics already name "
            f"{backend}: give --backend {opened.kind.value}"
        )
    return opened


def _resolve(
    uri: ModelURI, settings: Settings, downloading: Callable[[], None] | None = None
) -> Resolution:
    """The local path to load; fetches into the cache when needed. Raises ``CacheError``.

    ``downloading`` is called when this process starts a download.
    """
    cache = ModelCache(
        settings.cache_dir or default_cache_dir(),
        max_bytes=int(settings.cache_max_bytes) if settings.cache_max_bytes else None,
        downloading=downloading,
    )
    # The cache holds a shared "in use" lock on the entry for the rest of the
    # process's life, so that no prune evicts the model this pod serves.
    return cache.resolve(uri, verify=settings.cache_verify)


def _record_lookup(result: str, model_name: str, backend: str) -> None:
    # The other results' series start at 0 too (metrics.initialise_series).
    CACHE_LOOKUPS.labels(model_name, backend, result).inc()


def _record_resolution(
    resolution: Resolution, model_name: str, backend: str, *, lookup_recorded: bool = False
) -> None:
    """Export the lookup result (unless already exported when the download began),
    the bytes fetched and the cache cold-start phases."""
    if not lookup_recorded:
        _record_lookup(resolution.result, model_name, backend)
    CACHE_DOWNLOAD_BYTES.labels(model_name, backend).inc(resolution.downloaded_bytes)
    for phase, seconds in resolution.seconds.items():
        COLD_START.labels(phase, model_name, backend).observe(seconds)


async def _in_daemon_thread(work: Callable[[], T]) -> T:
    """Run ``work`` in a daemon thread and await its result.

    Not ``asyncio.to_thread``: interpreter exit joins the default executor's
    threads, so a SIGTERM during a long download would wait for the download.
    A daemon thread dies with the process; the cache's lock and staging
    directory make an interrupted fetch safe to take over.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def deliver(result: T | None, error: BaseException | None) -> None:
        if future.done():  # the awaiting coroutine was cancelled
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(cast(T, result))

    def run() -> None:
        result: T | None = None
        error: BaseException | None = None
        try:
            result = work()
        except BaseException as exc:
            error = exc
        # The loop may have closed meanwhile: then the process is exiting.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(deliver, result, error)

    threading.Thread(target=run, name="kzero-model-fetch", daemon=True).start()
    return await future
