"""Where the served model's bytes come from, and what the cold start spent getting them.

The source is ``--model`` (``KZERO_MODEL``), else KServe's ``STORAGE_URI``, else
the bundled default. Local paths are served in place; remote URIs go through
the model cache, so a pod that scales from zero finds them on the volume.
"""

from __future__ import annotations

import os

from predictor.cache.config import default_cache_dir
from predictor.cache.store import ModelCache, Resolution
from predictor.cache.uri import parse_model_uri
from predictor.default_model import default_model_path
from predictor.metrics import CACHE_DOWNLOAD_BYTES, CACHE_LOOKUPS, CACHE_RESULTS, COLD_START
from predictor.settings import Settings


def model_source(settings: Settings) -> str:
    return settings.model or os.environ.get("STORAGE_URI") or str(default_model_path())


def resolve_model(settings: Settings) -> Resolution:
    """The local path to load; fetches into the cache when needed. Raises ``CacheError``."""
    cache = ModelCache(
        settings.cache_dir or default_cache_dir(),
        max_bytes=int(settings.cache_max_bytes) if settings.cache_max_bytes else None,
    )
    # The cache holds a shared "in use" lock on the entry for the rest of the
    # process's life, so that no prune evicts the model this pod serves.
    return cache.resolve(parse_model_uri(model_source(settings)), verify=settings.cache_verify)


def record_resolution(resolution: Resolution, model_name: str, backend: str) -> None:
    """Export the lookup result, the bytes fetched and the cache cold-start phases."""
    for result in CACHE_RESULTS:
        # Every result series exists from the start, so rate() and alerts see a 0, not nothing.
        CACHE_LOOKUPS.labels(model_name, backend, result).inc(
            1 if result == resolution.result else 0
        )
    CACHE_DOWNLOAD_BYTES.labels(model_name, backend).inc(resolution.downloaded_bytes)
    for phase, seconds in resolution.seconds.items():
        COLD_START.labels(phase, model_name, backend).observe(seconds)
