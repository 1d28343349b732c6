"""Where the model cache lives and how big it may grow, from the environment.

Shared by ``kzero serve`` (through ``Settings``) and ``kzero cache``, so that a
warm Job and the serving pods agree on the root without repeating flags.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import ByteSize, TypeAdapter

from predictor.cache.errors import CacheError


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/kzero``, else ``~/.cache/kzero``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kzero"


def cache_dir_from_env() -> Path:
    configured = os.environ.get("KZERO_CACHE_DIR")
    return Path(configured) if configured else default_cache_dir()


def max_bytes_from_env() -> int | None:
    configured = os.environ.get("KZERO_CACHE_MAX_BYTES")
    if not configured:
        return None
    try:
        return int(TypeAdapter(ByteSize).validate_python(configured))
    except ValueError:
        raise CacheError(
            f"KZERO_CACHE_MAX_BYTES='{configured}' is not a size: use bytes or e.g. 20GiB"
        ) from None
