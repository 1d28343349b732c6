"""PromQL on Knative Serving's own metrics: scale to zero as Knative sees it.

kzero's predictor cannot report what happens while it does not exist: how many
pods the autoscaler wants, and the requests the activator holds while a pod
starts. Knative's autoscaler, activator and queue-proxy can.

The names are those of Knative Serving 1.21 (read at tag knative-v1.21.1).
Knative records them with OpenTelemetry and, with ``metrics-protocol:
prometheus`` (and ``request-metrics-protocol: prometheus`` for queue-proxy) in
config-observability, serves them through the OpenTelemetry Prometheus exporter
with ``otlptranslator.UnderscoreEscapingWithSuffixes`` (knative.dev/pkg
observability/metrics/prometheus_enabled.go, buildPrometheus). That strategy
turns dots into underscores, appends the unit ("s" -> ``_seconds``; units in
braces such as ``{pod}`` add nothing) and ``_total`` to counters
(vendor/github.com/prometheus/otlptranslator/metric_namer.go, normalizeName).
Attribute keys become labels the same way: ``kn.service.name`` ->
``kn_service_name`` (pkg/metrics/key.go).

KServe names the Knative Service of an InferenceService's predictor
``<name>-predictor`` when the predictor has no ``name`` of its own (kserve/kserve
pkg/constants/constants.go, PredictorServiceName, used by
pkg/controller/v1beta1/inferenceservice/components/predictor.go), and kzero's
chart names each InferenceService after its ``model_name`` and its predictor
not at all: so ``kn_service_name`` is ``$model_name-predictor``.
"""

from __future__ import annotations

KN_SEL = 'kn_service_name=~"$model_name-predictor"'
_BY = "k8s_namespace_name, kn_service_name"

# kn.revision.pods.count: "pods that are allocated currently", the ready pods
# the KPA counted (pkg/reconciler/autoscaling/kpa/metrics.go, newMetrics). An
# observable gauge the autoscaler reports for as long as the revision's
# PodAutoscaler exists, so it is 0, not absent, at zero.
ACTUAL_PODS = f"sum by ({_BY}) (kn_revision_pods_count{{{KN_SEL}}})"
# kn.revision.pods.desired: the pods the autoscaler's last decision wants
# (pkg/autoscaler/scaling/metrics.go, newMetrics; set in autoscaler.Scale).
DESIRED_PODS = f"sum by ({_BY}) (kn_revision_pods_desired{{{KN_SEL}}})"

# The activator's HTTP server is wrapped in otelhttp (cmd/activator/main.go), whose
# http.server.request.duration histogram (unit s) counts every proxied request;
# its MetricAttributeHandler adds the revision's service, configuration, revision
# and namespace to those series (pkg/activator/handler/metric_handler.go). The
# queue-proxy's own otelhttp series carry no kn_service_name (its revision
# labels are resource attributes, see below), so this selector keeps the
# activator's requests only.
ACTIVATOR_REQUESTS = (
    f"sum by ({_BY}, http_response_status_code)"
    f" (rate(http_server_request_duration_seconds_count{{{KN_SEL}}}[$__rate_interval]))"
)
# kn.revision.request.concurrency: "concurrent requests that are routed to
# Activator", averaged over each 1 s report (pkg/activator/handler/metrics.go;
# recorded in concurrency_reporter.go, reportToMetricsBackend). While a revision
# is at zero these are the requests waiting in the activator for a pod.
ACTIVATOR_CONCURRENCY = f"sum by ({_BY}) (kn_revision_request_concurrency{{{KN_SEL}}})"


def queue_proxy_latency(q: float) -> str:
    """Quantile of kn.serving.invocation.duration (pkg/queue/request_metric.go): the
    time queue-proxy spends on each request, queueing at the container included.

    queue-proxy puts its revision's names on the OpenTelemetry resource, not on
    each series (pkg/queue/sharedmain/otel.go, res), and the exporter serves
    resource attributes as the labels of ``target_info``: join on the scrape
    target to select and name the model's pods.
    """
    buckets = (
        "rate(kn_serving_invocation_duration_seconds_bucket[$__rate_interval])"
        f" * on (job, instance) group_left ({_BY}) target_info{{{KN_SEL}}}"
    )
    return f"histogram_quantile({q}, sum by (le, {_BY}) ({buckets}))"
