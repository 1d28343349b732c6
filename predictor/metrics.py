"""Every Prometheus metric kzero exports, in one place.

The names are a contract shared with the dashboards, alert rules and the cost
model (docs/metrics.md); ``tests/integration/test_metrics_contract.py`` pins
them. All live in prometheus_client's default registry, which KServe's
``/metrics`` serves, next to KServe's own and (on GPU) vLLM's ``vllm:*`` series.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

from predictor.backends.base import PREFIX_SOURCES, PrefixSource
from predictor.backends.prefix_store import FILE_RESULTS as PREFIX_FILE_RESULTS

# The *_created series double the exposition size and no dashboard uses them;
# vLLM turns them off too.
disable_created_metrics()

LABELS = ("model_name", "backend")

# Buckets span a fast token on a GPU (1 ms) to a CPU pod decoding a long answer.
_TTFT_BUCKETS = (0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0)  # fmt: skip
_ITL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5)  # fmt: skip
_REQUEST_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 240.0, 480.0, 960.0)  # fmt: skip
# Cold starts run from a second (cached, small model) to many minutes (download).
_COLD_START_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0)  # fmt: skip

TIME_TO_FIRST_TOKEN = Histogram(
    "kzero_time_to_first_token_seconds",
    "Time from request arrival to the first generated token, queueing included.",
    LABELS,
    buckets=_TTFT_BUCKETS,
)
INTER_TOKEN_LATENCY = Histogram(
    "kzero_inter_token_latency_seconds",
    "Time between consecutive generated tokens of one request.",
    LABELS,
    buckets=_ITL_BUCKETS,
)
E2E_REQUEST_LATENCY = Histogram(
    "kzero_e2e_request_latency_seconds",
    "Time from request arrival to its last token (or abort).",
    LABELS,
    buckets=_REQUEST_BUCKETS,
)
REQUEST_QUEUE_TIME = Histogram(
    "kzero_request_queue_seconds",
    "Time a request waited before the engine started on it.",
    LABELS,
    buckets=_REQUEST_BUCKETS,
)
PROMPT_TOKENS = Counter("kzero_prompt_tokens", "Prompt tokens of requests the engine ran.", LABELS)
PROMPT_TOKENS_CACHED = Counter(
    "kzero_prompt_tokens_cached",
    "Prompt tokens of requests the engine ran whose KV it reused instead of computing, by "
    "source: memory (the request's own sequence held them), copy (copied from another "
    "sequence), disk (a prefix restored from the prefix cache volume at start).",
    (*LABELS, "source"),
)
PROMPT_TOKENS_COMPUTED = Counter(
    "kzero_prompt_tokens_computed",
    "Prompt tokens of requests the engine ran that it had to compute (prefill).",
    LABELS,
)
GENERATION_TOKENS = Counter(
    "kzero_generation_tokens", "Tokens generated, counted as they are produced.", LABELS
)
REQUESTS = Counter(
    "kzero_requests",
    "Generation requests by outcome: ok, aborted (client went away), invalid (4xx: bad "
    "input), rejected (refused for now and retryable: 429 at the admission limit, 503 "
    "while loading, draining or restarting), error (500, 504).",
    (*LABELS, "status"),
)
REQUESTS_RUNNING = Gauge(
    "kzero_requests_running", "Requests the engine is generating for now.", LABELS
)
REQUESTS_WAITING = Gauge(
    "kzero_requests_waiting", "Requests accepted and waiting for the engine.", LABELS
)
COLD_START = Histogram(
    "kzero_cold_start_seconds",
    "Duration of each cold-start phase: process_start (process start to imports done), "
    "cache (lookup), download, verify (sha256), load (engine and weights, on a thread "
    "that overlaps the imports), warm_up (one token through the engine), ready (process "
    "start to ready to serve).",
    ("phase", *LABELS),
    buckets=_COLD_START_BUCKETS,
)
CACHE_LOOKUPS = Counter(
    "kzero_cache_lookups",
    "Model cache lookups at start-up: hit (complete entry on the volume), miss (fetched "
    "now), local (a local path served in place, no cache involved).",
    (*LABELS, "result"),
)
CACHE_RESULTS = ("hit", "miss", "local")
CACHE_DOWNLOAD_BYTES = Counter(
    "kzero_cache_download_bytes", "Bytes this process fetched into the model cache.", LABELS
)
PREFIX_CACHE_FILES = Counter(
    "kzero_prefix_cache_files",
    "Prefix cache files on the volume by what became of them: restored (loaded at start), "
    "saved, evicted (budget), corrupt (damaged or truncated: ignored), foreign (another "
    "model's, llama.cpp build's or format's: ignored), rejected (llama.cpp refused it: "
    "ignored), save_failed.",
    ("model_name", "backend", "result"),
)
PREFIX_CACHE_RAM_BYTES = Gauge(
    "kzero_prefix_cache_ram_bytes",
    "Bytes of prompt prefixes' KV cells kept in host memory after their sequence was "
    "taken (llama.cpp; at most --prefix_cache_ram_bytes).",
    LABELS,
)
BACKEND_INFO = Gauge(
    "kzero_backend_info",
    "Always 1; the labels say which engine serves which model on which device, and why.",
    ("backend", "device", "model_name", "quantization", "reason"),
)

REQUEST_STATUSES = ("ok", "aborted", "invalid", "rejected", "error")
# The phases every process observes exactly once. cache, download and verify run
# only for some models (a local path has no cache lookup, a hit no download), so
# they appear when they run: a series at count 0 would read as "ran in 0 s".
EVERY_PROCESS_PHASES = ("process_start", "load", "ready")


def initialise_series(model_name: str, backend: str) -> None:
    """Export, at 0, every series whose labels are known once the model and backend are.

    Call once per process, as soon as both are known. A counter series that first
    appears already above 0 looks to ``rate()`` and ``increase()`` like no change:
    they need a sample before the first increment. ``labels()`` without an
    increment creates the child at 0.
    """
    labels = (model_name, backend)
    for status in REQUEST_STATUSES:
        REQUESTS.labels(*labels, status)
    for result in CACHE_RESULTS:
        CACHE_LOOKUPS.labels(*labels, result)
    for phase in EVERY_PROCESS_PHASES:
        COLD_START.labels(phase, *labels)
    for source in PREFIX_SOURCES:
        PROMPT_TOKENS_CACHED.labels(*labels, source)
    if backend == "llamacpp":
        for result in PREFIX_FILE_RESULTS:
            PREFIX_CACHE_FILES.labels(*labels, result)
        PREFIX_CACHE_RAM_BYTES.labels(*labels)
    for metric in (
        PROMPT_TOKENS,
        PROMPT_TOKENS_COMPUTED,
        GENERATION_TOKENS,
        CACHE_DOWNLOAD_BYTES,
        REQUESTS_RUNNING,
        REQUESTS_WAITING,
        TIME_TO_FIRST_TOKEN,
        INTER_TOKEN_LATENCY,
        E2E_REQUEST_LATENCY,
        REQUEST_QUEUE_TIME,
    ):
        metric.labels(*labels)


class RequestRecorder:
    """Records one generation request's metrics through its life.

    ``finish`` is safe to call exactly once from a ``finally``: whatever happened
    (queued, running, aborted), the running and waiting gauges return to zero.
    """

    def __init__(self, model_name: str, backend: str) -> None:
        self._labels: Sequence[str] = (model_name, backend)
        # Resolved once: ``labels()`` hashes and looks up on every call, and the
        # token path runs for every token.
        self._generation_tokens = GENERATION_TOKENS.labels(*self._labels)
        self._inter_token_latency = INTER_TOKEN_LATENCY.labels(*self._labels)
        self._arrival = time.perf_counter()
        self._last_token: float | None = None
        self._cached_tokens = 0
        self._cache_source: PrefixSource | None = None
        self._state = "waiting"
        REQUESTS_WAITING.labels(*self._labels).inc()

    def started(self) -> None:
        """The engine picked the request up."""
        if self._state != "waiting":
            return
        REQUEST_QUEUE_TIME.labels(*self._labels).observe(time.perf_counter() - self._arrival)
        REQUESTS_WAITING.labels(*self._labels).dec()
        REQUESTS_RUNNING.labels(*self._labels).inc()
        self._state = "running"

    def prompt_reuse(self, cached_tokens: int, source: PrefixSource | None) -> None:
        """The engine reused ``cached_tokens`` of the prompt from its prefix cache."""
        self._cached_tokens = cached_tokens
        self._cache_source = source or "memory"

    def tokens(self, count: int) -> None:
        """``count`` new tokens arrived together (vLLM deltas may carry several)."""
        if count <= 0:
            return
        now = time.perf_counter()
        self._generation_tokens.inc(count)
        if self._last_token is None:
            # Tokens that arrive with the first one have no gap of their own.
            TIME_TO_FIRST_TOKEN.labels(*self._labels).observe(now - self._arrival)
        else:
            gap = (now - self._last_token) / count
            for _ in range(count):
                self._inter_token_latency.observe(gap)
        self._last_token = now

    def finish(self, status: str, prompt_tokens: int | None) -> None:
        """Close the request; ``prompt_tokens`` is None when it never reached the engine."""
        if self._state == "finished":
            return
        if self._state == "waiting":
            REQUESTS_WAITING.labels(*self._labels).dec()
        elif self._state == "running":
            REQUESTS_RUNNING.labels(*self._labels).dec()
        self._state = "finished"
        REQUESTS.labels(*self._labels, status).inc()
        if prompt_tokens is not None:
            PROMPT_TOKENS.labels(*self._labels).inc(prompt_tokens)
            cached = min(self._cached_tokens, prompt_tokens)
            if self._cache_source is not None:
                PROMPT_TOKENS_CACHED.labels(*self._labels, self._cache_source).inc(cached)
            PROMPT_TOKENS_COMPUTED.labels(*self._labels).inc(prompt_tokens - cached)
            E2E_REQUEST_LATENCY.labels(*self._labels).observe(time.perf_counter() - self._arrival)


def record_prefix_file(model_name: str, result: str) -> None:
    """Count one prefix cache file event (llama.cpp only: it alone keeps prefix files)."""
    PREFIX_CACHE_FILES.labels(model_name, "llamacpp", result).inc()


def record_prefix_ram_bytes(model_name: str, used: int) -> None:
    """The bytes the llama.cpp engine keeps in host memory for given-up prefixes."""
    PREFIX_CACHE_RAM_BYTES.labels(model_name, "llamacpp").set(used)


def record_rejected_request(model_name: str, backend: str, status: str) -> None:
    """Count a request refused before it reached the engine (bad input, not ready)."""
    REQUESTS.labels(model_name, backend, status).inc()
