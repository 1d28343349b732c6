"""Where the served model's bytes come from, and what the cold start spent getting them.

The source is ``--model`` (``KZERO_MODEL``), else KServe's ``STORAGE_URI``, else
the bundled default. Local paths are served in place; remote URIs go through
the model cache, so a pod that scales from zero finds them on the volume.

A remote model whose backend is known from the settings or the URI alone is
fetched after the port opens (``fetched_after_port_opens``): the download may
take minutes, and meanwhile ``/metrics`` shows the cache miss and readiness
answers 503, instead of a pod that cannot be scraped.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Callable
from typing import TypeVar, cast

from predictor.backends.base import BackendKind
from predictor.cache.config import default_cache_dir
from predictor.cache.store import ModelCache, Resolution
from predictor.cache.uri import ModelURI, parse_model_uri
from predictor.default_model import default_model_path
from predictor.metrics import CACHE_DOWNLOAD_BYTES, CACHE_LOOKUPS, CACHE_RESULTS, COLD_START
from predictor.settings import Settings

T = TypeVar("T")


def model_source(settings: Settings) -> str:
    return settings.model or os.environ.get("STORAGE_URI") or str(default_model_path())


def fetched_after_port_opens(settings: Settings, uri: ModelURI) -> BackendKind | None:
    """The backend of a remote model, when it is known before the model's bytes are.

    The backend labels every metric, the cache's included, so it must be known
    before the lookup is exported: from ``--backend``, or from a URI that names
    a GGUF file. Otherwise (None) the files decide, and the fetch comes first.
    """
    if not uri.is_remote:
        return None
    if settings.backend is not BackendKind.AUTO:
        return settings.backend
    if not uri.is_archive() and uri.file_name().endswith(".gguf"):
        return BackendKind.LLAMACPP
    return None


def resolve_model(settings: Settings, downloading: Callable[[], None] | None = None) -> Resolution:
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
    return cache.resolve(parse_model_uri(model_source(settings)), verify=settings.cache_verify)


def record_lookup(result: str, model_name: str, backend: str) -> None:
    for each in CACHE_RESULTS:
        # Every result series exists from the start, so rate() and alerts see a 0, not nothing.
        CACHE_LOOKUPS.labels(model_name, backend, each).inc(1 if each == result else 0)


def record_resolution(
    resolution: Resolution, model_name: str, backend: str, *, lookup_recorded: bool = False
) -> None:
    """Export the lookup result (unless already exported when the download began),
    the bytes fetched and the cache cold-start phases."""
    if not lookup_recorded:
        record_lookup(resolution.result, model_name, backend)
    CACHE_DOWNLOAD_BYTES.labels(model_name, backend).inc(resolution.downloaded_bytes)
    for phase, seconds in resolution.seconds.items():
        COLD_START.labels(phase, model_name, backend).observe(seconds)


async def resolve_in_background(settings: Settings, model_name: str, backend: str) -> Resolution:
    """``resolve_model`` off the event loop, exporting the miss as soon as a download starts."""
    resolution = await in_daemon_thread(
        lambda: resolve_model(settings, lambda: record_lookup("miss", model_name, backend))
    )
    # A miss is exactly a download this process started: exported then already.
    record_resolution(resolution, model_name, backend, lookup_recorded=resolution.result == "miss")
    return resolution


async def in_daemon_thread(work: Callable[[], T]) -> T:
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
