"""From a model on disk to an engine object: locate and check it, choose the engine, build it.

The one way a backend is made, whether the model was on disk before the port
opened or was fetched after. Nothing heavy happens here: the engine loads its
weights in ``Backend.load``.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from predictor.backends.base import Backend, BackendKind
from predictor.backends.select import ModelLocation, choose_backend, locate_model
from predictor.cache.config import default_cache_dir
from predictor.settings import Settings

if TYPE_CHECKING:
    from predictor.backends.llamacpp import PrefixCacheSettings

logger = logging.getLogger(__name__)


def derive_model_name(path: Path) -> str:
    """``SmolLM2-135M-Instruct.Q4_1.gguf`` -> ``SmolLM2-135M-Instruct.Q4_1``; a directory keeps its name."""
    name = path.name[: -len(".gguf")] if path.name.endswith(".gguf") else path.name
    # Split GGUF shards share one model: drop the "-00001-of-00003" suffix.
    return re.sub(r"-\d{5}-of-\d{5}$", "", name)


@dataclass(frozen=True)
class OpenedBackend:
    """An engine object for a model, not loaded yet, and why that engine."""

    backend: Backend
    kind: BackendKind
    reason: str
    model_name: str
    path: Path


def open_backend(path: Path, settings: Settings, *, model_name: str | None) -> OpenedBackend:
    """The engine for the model at ``path``; ``model_name`` defaults to one derived from the file.

    Raises ``BackendLoadError`` (with ``BadModelFileError``) when the model is
    broken or no engine can serve it.
    """
    location = locate_model(path)
    choice = choose_backend(settings.backend, location)
    name = model_name or derive_model_name(location.path)
    backend = _create(choice.kind, location, settings, name)
    logger.info("serving %s as '%s' with %s: %s", location.path, name, choice.kind, choice.reason)
    return OpenedBackend(backend, choice.kind, choice.reason, name, location.path)


def _create(kind: BackendKind, location: ModelLocation, settings: Settings, name: str) -> Backend:
    if kind is BackendKind.VLLM:
        from predictor.backends.vllm import VllmBackend

        return VllmBackend(
            str(location.path),
            max_model_len=settings.n_ctx,
            gpu_memory_utilization=settings.gpu_memory_utilization,
            enforce_eager=settings.enforce_eager,
            dtype=settings.dtype,
            served_model_name=name,
            max_num_seqs=settings.max_running_requests,
        )
    from predictor.backends.llamacpp import LlamaCppBackend

    return LlamaCppBackend(
        location.path,
        n_ctx=settings.n_ctx,
        n_threads=settings.n_threads,
        n_batch=settings.n_batch,
        n_parallel=settings.max_running_requests,
        metadata=location.metadata,
        chat_template=location.chat_template,
        flash_attn=settings.flash_attn,
        prefix_cache=_prefix_cache(settings, name),
    )


def _prefix_cache(settings: Settings, name: str) -> PrefixCacheSettings | None:
    from predictor.backends.llamacpp import PrefixCacheSettings
    from predictor.metrics import record_prefix_file, record_prefix_ram_bytes

    if not settings.prefix_cache:
        return None
    directory = (
        settings.prefix_cache_dir or (settings.cache_dir or default_cache_dir()) / "prefixes"
    )
    return PrefixCacheSettings(
        directory=directory,
        max_bytes=int(settings.prefix_cache_max_bytes),
        on_file_event=lambda result: record_prefix_file(name, result),
        ram_bytes=int(settings.prefix_cache_ram_bytes),
        on_ram_bytes=lambda used: record_prefix_ram_bytes(name, used),
    )
