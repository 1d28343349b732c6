"""The kzero overview dashboard, built with grafana-foundation-sdk.

``generate.py`` writes it to ``kzero-overview.json``; edit this file, never the JSON.
"""

from __future__ import annotations

import knative_queries as kn
import queries as q
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import prometheus, stat, timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.models import dashboard as model

from autoscaling.cost import lambda_memory_for_vcpus
from autoscaling.prices import Prices

UID = "kzero-overview"
DATASOURCE = model.DataSourceRef(type_val="prometheus", uid="${datasource}")
# The pod the price variables describe by default: 2 vCPU, kzero's CPU preset.
DEFAULT_POD_VCPUS = 2
DEFAULT_NODE = "aws_c7i_xlarge"


def _target(expr: str, legend: str, ref: str = "A") -> prometheus.Dataquery:
    return (
        prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref).datasource(DATASOURCE)
    )


def _series(
    title: str, unit: str, description: str, targets: list[tuple[str, str]], width: int = 12
) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .unit(unit)
        .description(description)
        .datasource(DATASOURCE)
        .height(8)
        .span(width)
    )
    for index, (expr, legend) in enumerate(targets):
        panel.with_target(_target(expr, legend, chr(ord("A") + index)))
    return panel


def _percentiles(histogram: str, title: str, description: str) -> timeseries.Panel:
    return _series(
        title,
        "s",
        description,
        [
            (q.quantile(histogram, p), f"p{round(p * 100)} {{{{model_name}}}}")
            for p in (0.5, 0.95, 0.99)
        ],
        width=8,
    )


def _price(name: str, label: str, value: float, description: str) -> dash.TextBoxVariable:
    text = f"{value:.10f}".rstrip("0").rstrip(".")
    return (
        dash.TextBoxVariable(name)
        .label(label)
        .description(description)
        .default_value(text)
        .current(model.VariableOption(selected=True, text=text, value=text))
    )


def variables(prices: Prices) -> list[cogbuilder.Builder[model.VariableModel]]:
    node = prices.node(DEFAULT_NODE)
    pod_share = node.per_hour * DEFAULT_POD_VCPUS / node.vcpus
    source = f"prices.yaml as of {prices.as_of}"
    lam, run = prices.lambda_, prices.cloud_run
    return [
        dash.DatasourceVariable("datasource").label("Data source").type("prometheus"),
        dash.QueryVariable("model_name")
        .label("Model")
        .description("Served model name (label model_name)")
        .datasource(DATASOURCE)
        .query("label_values(kzero_backend_info, model_name)")
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .multi(True)
        .include_all(True)
        .all_value(".*"),
        _price(
            "pod_price_per_hour",
            "$/pod-hour",
            pod_share,
            f"This cluster: a {DEFAULT_POD_VCPUS}-vCPU pod's share of {node.name} ({source})",
        ),
        _price("lambda_gb_second", "Lambda $/GB-s", lam["x86_gb_second"].value, source),
        _price(
            "lambda_memory_gb",
            "Lambda GB",
            lambda_memory_for_vcpus(prices, DEFAULT_POD_VCPUS),
            f"Memory that buys {DEFAULT_POD_VCPUS} vCPU on Lambda",
        ),
        _price("lambda_request_fee", "Lambda $/request", lam["request"].value, source),
        _price("cloud_run_vcpu_second", "Cloud Run $/vCPU-s", run["vcpu_second"].value, source),
        _price("cloud_run_gib_second", "Cloud Run $/GiB-s", run["gib_second"].value, source),
        _price("cloud_run_vcpus", "Cloud Run vCPU", DEFAULT_POD_VCPUS, "vCPUs per instance"),
        _price("cloud_run_memory_gib", "Cloud Run GiB", 2, "Memory per instance"),
        _price("cloud_run_request_fee", "Cloud Run $/request", run["request"].value, source),
    ]


def panels() -> list[tuple[str, list[cogbuilder.Builder[model.Panel]]]]:
    cost = (
        stat.Panel()
        .title("Cost per 1M tokens: this cluster vs AWS Lambda vs Cloud Run")
        .unit("currencyUSD")
        .description(
            "This cluster: running pods x $pod_price_per_hour over the tokens they generate. "
            "Lambda and Cloud Run: the same requests billed for their engine time (end-to-end "
            "minus queueing) at the price variables, plus the request fee. Scale to zero shows "
            "up here as fewer pods; idle pods raise this cluster's figure."
        )
        .datasource(DATASOURCE)
        .height(8)
        .span(24)
        .with_target(_target(q.COST_CLUSTER, "this cluster", "A"))
        .with_target(_target(q.COST_LAMBDA, "AWS Lambda", "B"))
        .with_target(_target(q.COST_CLOUD_RUN, "Cloud Run", "C"))
    )
    return [
        (
            "Traffic",
            [
                _series(
                    "Requests/s by outcome",
                    "reqps",
                    "Generation requests per second by status: ok, aborted (client went "
                    "away), invalid (4xx), error (5xx).",
                    [(q.REQUESTS_BY_STATUS, "{{model_name}} {{status}}")],
                ),
                _series(
                    "Error ratio",
                    "percentunit",
                    "Share of requests that ended in a 5xx (status=error).",
                    [(q.ERROR_RATIO, "{{model_name}}")],
                ),
            ],
        ),
        (
            "Latency",
            [
                _percentiles(
                    "kzero_time_to_first_token_seconds",
                    "Time to first token",
                    "Request arrival at the predictor to its first token, queueing included. "
                    "A cold start's wait in the Knative activator comes before this.",
                ),
                _percentiles(
                    "kzero_inter_token_latency_seconds",
                    "Inter-token latency",
                    "Gap between consecutive tokens of one request.",
                ),
                _percentiles(
                    "kzero_e2e_request_latency_seconds",
                    "End-to-end latency",
                    "Request arrival at the predictor to its last token or abort.",
                ),
            ],
        ),
        (
            "Throughput and load",
            [
                _series(
                    "Tokens/s per pod",
                    "suffix: tok/s",
                    "Generated tokens per second of each predictor process (instance).",
                    [(q.TOKENS_PER_POD, "{{model_name}} {{instance}}")],
                    width=8,
                ),
                _series(
                    "Tokens/s in total",
                    "suffix: tok/s",
                    "Generated and prompt tokens per second over all pods.",
                    [
                        (q.GENERATED_TOKENS, "generated {{model_name}}"),
                        (q.PROMPT_TOKENS, "prompt {{model_name}}"),
                    ],
                    width=8,
                ),
                _series(
                    "Running and waiting requests",
                    "short",
                    "Requests the engines generate for, and requests queued for them.",
                    [(q.RUNNING, "running {{model_name}}"), (q.WAITING, "waiting {{model_name}}")],
                    width=8,
                ),
                _series(
                    "Prompt tokens: computed and reused",
                    "suffix: tok/s",
                    "Prompt tokens the engines prefilled, and those whose KV they reused from "
                    "the prefix cache instead: memory (the request's own sequence), copy "
                    "(another sequence), ram (cells a sequence gave up, kept in host memory), "
                    "disk (restored from the volume at a cold start).",
                    [
                        (q.PROMPT_COMPUTED, "computed {{model_name}}"),
                        (q.PROMPT_REUSED, "reused from {{source}} {{model_name}}"),
                    ],
                ),
                _series(
                    "Prefix reuse ratio",
                    "percentunit",
                    "Share of prompt tokens served from the prefix cache. A chat app with a long "
                    "shared system prompt should sit high; near 0 means every prompt is new.",
                    [(q.PREFIX_REUSE_RATIO, "{{model_name}}")],
                ),
                _series(
                    "Prefix cache host memory",
                    "bytes",
                    "KV cells of prefixes whose sequence was taken, kept in host memory for "
                    "their next request (llama.cpp), against --prefix_cache_ram_bytes. Count "
                    "the budget in the pod's memory limit.",
                    [(q.PREFIX_RAM_BYTES, "{{model_name}}")],
                ),
            ],
        ),
        (
            "Scaling, cold starts and cache",
            [
                _series(
                    "Replicas and pod starts",
                    "short",
                    "Replicas: ready predictor processes exporting kzero_backend_info (no data "
                    "at zero: see Knative's revision pods). Pod starts: processes that became "
                    "ready in the time range; with minReplicas 0 every start after an idle "
                    "period is a scale-from-zero event.",
                    [
                        (q.REPLICAS, "replicas {{model_name}}"),
                        (q.POD_STARTS, "starts {{model_name}}"),
                    ],
                    width=6,
                ),
                _series(
                    "Cold-start phases (mean of running pods)",
                    "s",
                    "process_start, cache, download, verify, load and ready (the whole cold "
                    "start, process start to ready), averaged over the running pods.",
                    [(q.COLD_START_PHASES, "{{phase}} {{model_name}}")],
                    width=6,
                ),
                _series(
                    "Cache lookups",
                    "short",
                    "Model cache lookups at start-up in the time range: hit (on the volume), "
                    "miss (downloaded), local (a local path, no cache).",
                    [(q.CACHE_LOOKUPS, "{{result}} {{model_name}}")],
                    width=6,
                ),
                _series(
                    "Cache download bytes/s",
                    "Bps",
                    "Bytes per second fetched into the model cache.",
                    [(q.CACHE_BYTES, "{{model_name}}")],
                    width=6,
                ),
            ],
        ),
        (
            "Knative: scale to zero",
            [
                _series(
                    "Revision pods: actual and desired (Knative)",
                    "short",
                    "Knative's autoscaler: ready pods of the model's revisions "
                    "(kn_revision_pods_count) and the pods its last decision wants "
                    "(kn_revision_pods_desired). 0 at zero. Needs metrics-protocol: prometheus "
                    "in config-observability (docs/metrics.md).",
                    [
                        (kn.ACTUAL_PODS, "actual {{kn_service_name}}"),
                        (kn.DESIRED_PODS, "desired {{kn_service_name}}"),
                    ],
                    width=6,
                ),
                _series(
                    "Requests through the activator",
                    "reqps",
                    "Requests per second the Knative activator proxied to the model, by HTTP "
                    "status (http_server_request_duration_seconds_count). The activator is in "
                    "the path at zero and while burst capacity is short.",
                    [
                        (
                            kn.ACTIVATOR_REQUESTS,
                            "{{kn_service_name}} {{http_response_status_code}}",
                        )
                    ],
                    width=6,
                ),
                _series(
                    "Requests held in the activator",
                    "short",
                    "Concurrent requests routed to the activator (kn_revision_request_concurrency, "
                    "1 s averages). At zero these wait for a pod to start: a cold start's queue.",
                    [(kn.ACTIVATOR_CONCURRENCY, "{{kn_service_name}}")],
                    width=6,
                ),
                _series(
                    "Queue-proxy request latency",
                    "s",
                    "Time Knative's queue-proxy spent on each request of the model's pods "
                    "(kn_serving_invocation_duration_seconds, joined to target_info for the "
                    "revision's labels), queueing at the container included. Needs "
                    "request-metrics-protocol: prometheus.",
                    [
                        (kn.queue_proxy_latency(p), f"p{round(p * 100)} {{{{kn_service_name}}}}")
                        for p in (0.5, 0.95, 0.99)
                    ],
                    width=6,
                ),
            ],
        ),
        ("Cost", [cost]),
    ]


def build(prices: Prices) -> model.Dashboard:
    board = (
        dash.Dashboard("kzero overview")
        .uid(UID)
        .description(
            "kzero predictors: traffic, latency, throughput, scaling, cold starts, cache, "
            "and cost against AWS Lambda and Cloud Run. Generated by dashboards/generate.py."
        )
        .tags(["kzero", "llm", "knative"])
        .refresh("30s")
        .time("now-1h", "now")
        .timezone("browser")
    )
    for variable in variables(prices):
        board.with_variable(variable)
    for row, row_panels in panels():
        board.with_row(dash.Row(row))
        for panel in row_panels:
            board.with_panel(panel)
    return board.build()
