"""PromQL for the overview dashboard, using only the metrics contract (docs/metrics.md).

Grafana fills in ``$model_name``, ``$__rate_interval``, ``$__range`` and the
price variables; tests/integration/test_prometheus_queries.py does the same with
their defaults and runs every query against a real Prometheus.
"""

from __future__ import annotations

SEL = 'model_name=~"$model_name"'
RATE = "$__rate_interval"


def _rate(metric: str, extra: str = "") -> str:
    selector = f"{SEL},{extra}" if extra else SEL
    return f"rate({metric}{{{selector}}}[{RATE}])"


def quantile(histogram: str, q: float) -> str:
    return f"histogram_quantile({q}, sum by (le, model_name) ({_rate(histogram + '_bucket')}))"


REQUESTS_BY_STATUS = f"sum by (model_name, status) ({_rate('kzero_requests_total')})"
# No error series means no errors yet: count that as 0 rather than "no data".
_ERRORS = _rate("kzero_requests_total", 'status="error"')
ERROR_RATIO = (
    f"(sum by (model_name) ({_ERRORS})"
    f" or sum by (model_name) ({_rate('kzero_requests_total')}) * 0)"
    f" / sum by (model_name) ({_rate('kzero_requests_total')})"
)
TOKENS_PER_POD = f"sum by (model_name, instance) ({_rate('kzero_generation_tokens_total')})"
GENERATED_TOKENS = f"sum by (model_name) ({_rate('kzero_generation_tokens_total')})"
PROMPT_TOKENS = f"sum by (model_name) ({_rate('kzero_prompt_tokens_total')})"
# Prefill work the prefix cache saved: prompt tokens computed, and those whose KV
# was reused, by where it came from (memory, copy, ram, disk).
PROMPT_COMPUTED = f"sum by (model_name) ({_rate('kzero_prompt_tokens_computed_total')})"
PROMPT_REUSED = f"sum by (model_name, source) ({_rate('kzero_prompt_tokens_cached_total')})"
PREFIX_REUSE_RATIO = (
    f"sum by (model_name) ({_rate('kzero_prompt_tokens_cached_total')})"
    f" / sum by (model_name) ({_rate('kzero_prompt_tokens_total')})"
)
# Host memory holding prefixes that sequences gave up, summed over the pods.
PREFIX_RAM_BYTES = f"sum by (model_name) (kzero_prefix_cache_ram_bytes{{{SEL}}})"
RUNNING = f"sum by (model_name) (kzero_requests_running{{{SEL}}})"
WAITING = f"sum by (model_name) (kzero_requests_waiting{{{SEL}}})"
# Every ready predictor process exports kzero_backend_info = 1: counting them
# counts ready replicas. At zero there is no process, so no data: Knative's own
# revision pod count (knative_queries.py) shows the 0.
REPLICAS = f"count by (model_name) (kzero_backend_info{{{SEL}}})"


def _once_per_process(selector: str, by: str) -> str:
    """Processes whose once-per-process counter went above 0 during ``$__range``.

    The predictor exports these counters at 0 from its start (predictor/metrics.py,
    initialise_series), but a pod that is ready before its first scrape still
    shows up already at 1, and increase() reads a series born at 1 as no change.
    So count the series that were above 0 in the range and not at its start; the
    ``or`` gives 0, not "no data", for models whose pods ran without the event.
    """
    happened = f"(max_over_time({selector}[$__range]) > 0) unless ({selector} offset $__range > 0)"
    ran = f"max_over_time({selector}[$__range])"
    return f"count by ({by}) ({happened}) or 0 * count by ({by}) ({ran})"


# Each process observes phase="ready" once, when it becomes ready: one per pod start.
POD_STARTS = _once_per_process(
    f'kzero_cold_start_seconds_count{{{SEL},phase="ready"}}', "model_name"
)
# A loading pod exports its load and ready phases at count 0: leave those out
# rather than divide by 0.
COLD_START_PHASES = (
    f"sum by (model_name, phase) (kzero_cold_start_seconds_sum{{{SEL}}})"
    f" / (sum by (model_name, phase) (kzero_cold_start_seconds_count{{{SEL}}}) > 0)"
)
# Each process looks its model up once, at start: one result series goes to 1.
CACHE_LOOKUPS = _once_per_process(f"kzero_cache_lookups_total{{{SEL}}}", "model_name, result")
CACHE_BYTES = f"sum by (model_name) ({_rate('kzero_cache_download_bytes_total')})"

# Cost per 1M generated tokens. This cluster: running pods times the pod price,
# over the tokens they generate. The managed clouds: the same requests billed
# for their time in the engine (end-to-end minus queueing, since a managed
# platform gives each request its own instance) plus the request fee.
_TOKENS = f"sum({_rate('kzero_generation_tokens_total')})"
_ENGINE_SECONDS = (
    f"(sum({_rate('kzero_e2e_request_latency_seconds_sum')})"
    f" - sum({_rate('kzero_request_queue_seconds_sum')}))"
)
_OK = _rate("kzero_requests_total", 'status="ok"')
_REQUESTS = f"sum({_OK})"
COST_CLUSTER = f"$pod_price_per_hour / 3600 * count(kzero_backend_info{{{SEL}}}) / {_TOKENS} * 1e6"
COST_LAMBDA = (
    f"($lambda_gb_second * $lambda_memory_gb * {_ENGINE_SECONDS}"
    f" + $lambda_request_fee * {_REQUESTS}) / {_TOKENS} * 1e6"
)
COST_CLOUD_RUN = (
    f"(($cloud_run_vcpu_second * $cloud_run_vcpus + $cloud_run_gib_second * $cloud_run_memory_gib)"
    f" * {_ENGINE_SECONDS} + $cloud_run_request_fee * {_REQUESTS}) / {_TOKENS} * 1e6"
)
