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
RUNNING = f"sum by (model_name) (kzero_requests_running{{{SEL}}})"
WAITING = f"sum by (model_name) (kzero_requests_waiting{{{SEL}}})"
# Every predictor process exports kzero_backend_info = 1: counting them counts replicas.
REPLICAS = f"count by (model_name) (kzero_backend_info{{{SEL}}})"
# Each process observes phase="ready" once, when it becomes ready: one per pod start.
POD_STARTS = f'sum by (model_name) (increase(kzero_cold_start_seconds_count{{{SEL},phase="ready"}}[$__range]))'
COLD_START_PHASES = (
    f"sum by (model_name, phase) (kzero_cold_start_seconds_sum{{{SEL}}})"
    f" / sum by (model_name, phase) (kzero_cold_start_seconds_count{{{SEL}}})"
)
CACHE_LOOKUPS = (
    f"sum by (model_name, result) (increase(kzero_cache_lookups_total{{{SEL}}}[$__range]))"
)
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
