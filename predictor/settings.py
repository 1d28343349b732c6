"""One typed, validated settings object for the predictor.

Every field can come from a command-line flag (``--n_ctx``) or an environment
variable (``KZERO_N_CTX``); a flag wins over the environment, which wins over
the default. The flags are generated from these fields (see ``cli.py``), so the
descriptions below are also the ``--help`` text.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ByteSize, Field, SecretStr
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
            "Context window in tokens, per sequence on llama.cpp. Default: the model's trained "
            "context, capped at 4096 on llama.cpp so a long-context model does not reserve "
            "gigabytes of KV cache per sequence by surprise."
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
    host: str = Field(
        default="127.0.0.1",
        description="Address the HTTP server listens on. Loopback by default, so that a "
        "laptop's `kzero serve` is not a keyless LLM endpoint for its whole network; the "
        "container image sets 0.0.0.0 (KZERO_HOST), which pods need for probes and scrapes.",
    )
    header_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="A connection whose request line and headers have not all arrived this "
        "long after it opened (or after its next request began) is closed, so slow clients "
        "cannot hold every socket.",
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
    max_predict_instances: int = Field(
        default=16,
        ge=1,
        le=1024,
        description="Most instances one KServe :predict request may carry (HTTP 400 beyond). "
        "A :predict is admitted whole or refused whole (HTTP 429), never half-run.",
    )
    max_prompt_tokens: int | None = Field(
        default=None,
        ge=1,
        description="Largest prompt in tokens; longer prompts get HTTP 400. Default: the "
        "context window is the only limit.",
    )
    max_stop_sequences: int = Field(
        default=4, ge=0, le=64, description="Most stop sequences one request may give (HTTP 400)."
    )
    max_stop_length: int = Field(
        default=128, ge=1, description="Longest stop sequence in characters (HTTP 400)."
    )
    max_running_requests: int | None = Field(
        default=None,
        ge=1,
        le=1024,
        description="Requests the engine decodes together; more wait in the queue. llama.cpp: "
        "parallel sequences in one batched context (llama-server's --parallel), default four "
        "per CPU up to 8, fewer if their KV cache would pass 1 GiB. vLLM: max_num_seqs, "
        "default 256.",
    )
    max_queued_requests: int = Field(
        default=64,
        ge=0,
        description="Requests that may wait for the engine; beyond running + queued a request "
        "gets HTTP 429 with Retry-After, so a burst sheds load instead of piling up timeouts.",
    )
    request_timeout_s: float = Field(
        default=300.0,
        gt=0,
        description="Deadline of one request, queueing included; a request past it is aborted "
        "(HTTP 504, or an error event in a stream). Keep it below the Knative revision timeout.",
    )
    drain_timeout_s: float = Field(
        default=30.0,
        ge=0,
        description="On SIGTERM, readiness turns false and new requests get 503 at once; "
        "requests in flight get this long to finish before the process exits. Keep it below "
        "the pod's terminationGracePeriodSeconds.",
    )
    api_key: SecretStr | None = Field(
        default=None,
        description="API keys, comma-separated. When set (here or in api_key_file), the "
        "OpenAI and KServe inference routes need 'Authorization: Bearer <key>'. Only the "
        "environment sets this, never a flag: a flag shows in the process list.",
    )
    api_key_file: Path | None = Field(
        default=None,
        description="File with one API key per line ('#' comments and blank lines ignored), "
        "e.g. a mounted Kubernetes Secret.",
    )
    admin_api_key: SecretStr | None = Field(
        default=None,
        description="Admin keys, comma-separated, for KServe's model-management routes "
        "(/v2/repository/...: load and unload). Without an admin key those routes answer 403: "
        "an inference key never unloads the model. Environment only, like api_key.",
    )
    admin_api_key_file: Path | None = Field(
        default=None,
        description="File with one admin key per line, e.g. a mounted Kubernetes Secret.",
    )
    auth_health: bool = Field(
        default=False,
        description="Require the API key on health and readiness routes too. Off by default: "
        "kubelet and Knative probe without credentials.",
    )
    auth_metrics: bool = Field(
        default=False,
        description="Require the API key on /metrics too. Off by default: Prometheus scrapes "
        "without credentials, and the NetworkPolicy already limits who can reach it.",
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
    prefix_cache: bool = Field(
        default=True,
        description="llama.cpp: keep each finished request's KV cells and reuse the longest "
        "matching prompt prefix (from the same sequence, copied from another, restored from "
        "host memory or from prefix_cache_dir), so a shared system prompt or a growing chat "
        "is prefilled once. It lives in the KV cells already sized by n_ctx and "
        "max_running_requests, plus prefix_cache_ram_bytes of host memory. vLLM's automatic "
        "prefix caching is always on.",
    )
    prefix_cache_ram_bytes: ByteSize = Field(
        default=ByteSize(256 << 20),
        description="llama.cpp: host memory (e.g. 256MiB) for the KV cells of prefixes whose "
        "sequence was taken by another request, restored when a prompt starts with them "
        "again (a chat whose turn comes after others took its sequence, more system prompts "
        "than sequences). Least recently used first out; count it in the pod's memory "
        "limit. 0 turns it off.",
    )
    flash_attn: bool = Field(
        default=False,
        description="llama.cpp: flash attention, llama-server's default. Off by default: on "
        "the CPU it makes a token's KV depend on how its prompt was batched, so with it on "
        "prefix reuse (prefix_cache) is turned off, to keep answers independent of the "
        "cache. On the CPU it makes decode steps about a tenth faster over contexts of a few "
        "dozen tokens and 1.2-2x slower from a few hundred (docs/benchmarks.md): turn it on "
        "only for short prompts that share no prefix.",
    )
    prefix_cache_dir: Path | None = Field(
        default=None,
        description="llama.cpp: directory where shared prompt prefixes' KV state is saved, so a "
        "pod started from zero restores them before it reports ready. Default: 'prefixes' "
        "under cache_dir. A read-only mount is only read.",
    )
    prefix_cache_max_bytes: ByteSize = Field(
        default=ByteSize(1 << 30),
        description="Size budget of prefix_cache_dir (e.g. 1GiB); the least recently used "
        "prefix files are deleted to fit a new one. 0 turns saving off.",
    )
    cache_verify: bool = Field(
        default=True,
        description="Re-hash a cached model against the sha256 recorded when it was fetched "
        "before loading it; a damaged copy is fetched again.",
    )
