"""The metric names dashboards and rules may use: the metrics contract and Knative's own."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "dashboards" / "rules" / "kzero-rules.yaml"
RULE_TESTS = ROOT / "dashboards" / "rules" / "kzero-rules.test.yaml"
DASHBOARD = ROOT / "dashboards" / "kzero-overview.json"

# DESIGN.md "Metrics contract", as exposed (counters with _total, histograms
# with _bucket/_sum/_count).
HISTOGRAMS = (
    "kzero_time_to_first_token_seconds",
    "kzero_inter_token_latency_seconds",
    "kzero_e2e_request_latency_seconds",
    "kzero_request_queue_seconds",
    "kzero_cold_start_seconds",
)
COUNTERS = (
    "kzero_prompt_tokens_total",
    "kzero_prompt_tokens_cached_total",
    "kzero_prompt_tokens_computed_total",
    "kzero_generation_tokens_total",
    "kzero_requests_total",
    "kzero_cache_lookups_total",
    "kzero_cache_download_bytes_total",
    "kzero_prefix_cache_files_total",
)
GAUGES = (
    "kzero_requests_running",
    "kzero_requests_waiting",
    "kzero_prefix_cache_ram_bytes",
    "kzero_backend_info",
)
CONTRACT_SERIES = frozenset(
    [f"{h}{suffix}" for h in HISTOGRAMS for suffix in ("_bucket", "_sum", "_count")]
    + list(COUNTERS)
    + list(GAUGES)
)

# Knative Serving 1.21's series, as its OpenTelemetry Prometheus exporter names them
# (knative/serving at tag knative-v1.21.1; dashboards/knative_queries.py cites each).
KNATIVE_SERIES = frozenset(
    {
        "kn_revision_pods_count",  # pkg/reconciler/autoscaling/kpa/metrics.go
        "kn_revision_pods_desired",  # pkg/autoscaler/scaling/metrics.go
        "kn_revision_request_concurrency",  # pkg/activator/handler/metrics.go
        "http_server_request_duration_seconds_count",  # otelhttp in cmd/activator/main.go
        "kn_serving_invocation_duration_seconds_bucket",  # pkg/queue/request_metric.go
        "target_info",  # resource attributes, pkg/queue/sharedmain/otel.go
    }
)
ALLOWED_SERIES = CONTRACT_SERIES | KNATIVE_SERIES

_LABEL_LISTS = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_STRINGS = re.compile(r"\"[^\"]*\"")
# An identifier that is not a function call, a $variable or part of a number.
_IDENTIFIER = re.compile(r"(?<![$\w.:])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:])(?!\s*\()")
_KEYWORDS = frozenset({"and", "or", "unless", "offset", "bool", "e6", "inf", "nan"})


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects: what is left after removing label
    lists, matchers, ranges, strings, function calls, variables and keywords."""
    for pattern in (_STRINGS, _LABEL_LISTS, _MATCHERS, _RANGES):
        expr = pattern.sub(" ", expr)
    return {name for name in _IDENTIFIER.findall(expr) if name.lower() not in _KEYWORDS}


def rule_groups() -> list[dict[str, object]]:
    return yaml.safe_load(RULES.read_text())["groups"]


def recorded_names() -> set[str]:
    return {
        rule["record"] for group in rule_groups() for rule in group["rules"] if "record" in rule
    }
