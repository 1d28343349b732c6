"""One typed, validated settings object for the predictor.

Every field can come from a command-line flag (``--n_ctx``) or an environment
variable (``KZERO_N_CTX``); a flag wins over the environment, which wins over
the default. The flags are generated from these fields (see ``cli.py``), so the
descriptions below are also the ``--help`` text.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ByteSize, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from predictor.backends.base import BackendKind


class Settings(BaseSettings):
    """Predictor configuration. Flags and ``KZERO_*`` variables map 1:1 to fields."""

    model_config = SettingsConfigDict(env_prefix="KZERO_", extra="forbid", frozen=True)

    model: str | None = Field(
        default=None,
        description=(
            "Model to serve: a GGUF file (llama.cpp) or a Hugging Face directory with "
            "safetensors (vLLM), as a path or a URI (file://, pvc://, http(s)://, s3://, gs://, "
            "hf://, optionally ending in #sha256=<hex>). Remote URIs resolve through the model "
            "cache. Default: KServe's STORAGE_URI, else the bundled SmolLM2-135M-Instruct Q4_1."
        ),
    )
    model_name: str | None = Field(
        default=None,
        description="Name the model is served under. Default: derived from the file or directory name.",
    )
    backend: BackendKind = Field(
        default=BackendKind.AUTO,
        description=(
            "Engine: 'auto' picks vLLM when a CUDA GPU is visible, vllm imports and the model "
            "is a Hugging Face directory, and llama.cpp for GGUF files."
        ),
    )
    n_ctx: int | None = Field(
        default=None,
        ge=16,
        description=(
            "Context window in tokens. Default: the model's trained context, capped at "
            "8192 so a long-context model does not reserve gigabytes of KV cache by surprise."
        ),
    )
    n_threads: int | None = Field(
        default=None,
        ge=1,
        description="llama.cpp CPU threads. Default: the container's CPU quota (cgroup), not the host's core count.",
    )
    n_batch: int = Field(
        default=512, ge=1, description="llama.cpp prompt-processing batch size in tokens."
    )
    max_tokens_cap: int = Field(
        default=4096,
        ge=1,
        description="Largest max_tokens a request may ask for; larger requests get HTTP 400.",
    )
    max_request_bytes: int = Field(
        default=1_048_576,
        ge=1024,
        description="Largest accepted request body in bytes; larger bodies get HTTP 413.",
    )
    gpu_memory_utilization: float = Field(
        default=0.90,
        gt=0.0,
        le=1.0,
        description="vLLM: fraction of GPU memory the engine may use (weights, activations, KV cache).",
    )
    enforce_eager: bool = Field(
        default=False,
        description="vLLM: skip torch.compile and CUDA graph capture; faster cold start, slower decode.",
    )
    dtype: str = Field(default="auto", description="vLLM: weight and activation dtype.")
    cache_dir: Path | None = Field(
        default=None,
        description=(
            "Model cache root, where remote models are fetched once and reused (in Kubernetes, "
            "the model-cache PVC, possibly mounted read-only). Default: $XDG_CACHE_HOME/kzero."
        ),
    )
    cache_max_bytes: ByteSize | None = Field(
        default=None,
        description="Size budget of the model cache (e.g. 20GiB); least recently used entries "
        "not in use are evicted to fit a new one. Default: no budget, the volume is the limit.",
    )
    cache_verify: bool = Field(
        default=True,
        description="Re-hash a cached model against the sha256 recorded when it was fetched "
        "before loading it; a damaged copy is fetched again.",
    )
