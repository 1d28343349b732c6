"""kzero on a kind cluster: answer, scale to zero, cold-start from the cache, expose metrics.

The tests run in file order and build on each other (one model, one cluster):
`make kind-e2e` creates the cluster, installs the stack and kzero, then runs
this module. Without a reachable kind cluster every test skips with the reason.
"""

from __future__ import annotations

import json
import time
import urllib.error

import pytest

from .cluster import MODEL, NAMESPACE, Cluster, api_key
from .ingress import chat, route_host, stream_chat
from .pods import predictor_pods, ready_pod, sample, scrape_metrics, wait_for_zero_pods

pytestmark = pytest.mark.e2e

# Time for the InferenceService to become Ready on a fresh install: image
# already loaded into kind, model warmed by the post-install Job (which Helm
# waited for); a predictor that started before the Job finished is restarted
# by the kubelet, with its back-off, until the model is in the cache.
READY_TIMEOUT_SECONDS = 600
# tests/e2e/values.yaml sets a 6 s stable window; Knative then waits its 30 s
# scale-to-zero grace period, and the pod takes a few seconds to terminate.
SCALE_TO_ZERO_TIMEOUT_SECONDS = 300


def wait_ready(cluster: Cluster) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    conditions: list = []
    while time.monotonic() < deadline:
        service = cluster.custom.get_namespaced_custom_object(
            "serving.kserve.io", "v1beta1", NAMESPACE, "inferenceservices", MODEL
        )
        conditions = service.get("status", {}).get("conditions", [])
        if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
            return
        time.sleep(5)
    raise AssertionError(f"InferenceService {MODEL} not Ready: {conditions}")


def test_model_answers_a_chat_completion_through_the_knative_route(cluster: Cluster) -> None:
    wait_ready(cluster)
    answer = chat(route_host(cluster, NAMESPACE, MODEL), MODEL, "Say hello.", api_key(cluster))
    assert answer["choices"][0]["message"]["content"]
    assert answer["usage"]["completion_tokens"] > 0


def test_route_refuses_a_request_without_the_api_key(cluster: Cluster) -> None:
    # tests/e2e/values.yaml turns API keys on (auth.existingSecret).
    with pytest.raises(urllib.error.HTTPError) as refused:
        chat(route_host(cluster, NAMESPACE, MODEL), MODEL, "Say hello.", key=None)
    assert refused.value.code == 401
    assert json.load(refused.value)["error"]["code"] == "invalid_api_key"


def test_predictor_metrics_include_the_kzero_series(cluster: Cluster) -> None:
    metrics = scrape_metrics(cluster, NAMESPACE, ready_pod(cluster, NAMESPACE, MODEL))
    assert sample(metrics, "kzero_requests_total", model_name=MODEL, status="ok") >= 1
    assert sample(metrics, "kzero_backend_info", model_name=MODEL, backend="llamacpp") == 1
    assert sample(metrics, "kzero_time_to_first_token_seconds_count", model_name=MODEL) >= 1
    assert sample(metrics, "kzero_cold_start_seconds_count", phase="ready") >= 1


def test_revision_scales_to_zero_pods_when_idle(cluster: Cluster) -> None:
    seconds = wait_for_zero_pods(cluster, NAMESPACE, MODEL, SCALE_TO_ZERO_TIMEOUT_SECONDS)
    print(f"\n{MODEL}: scaled to zero {seconds:.0f}s after the wait began")
    assert predictor_pods(cluster, NAMESPACE, MODEL) == []


def test_request_at_zero_cold_starts_and_succeeds(cluster: Cluster) -> None:
    assert predictor_pods(cluster, NAMESPACE, MODEL) == [], "not at zero: cold start not measured"
    answer = stream_chat(
        route_host(cluster, NAMESPACE, MODEL), MODEL, "Count to five.", api_key(cluster)
    )
    print(
        f"\n{MODEL}: cold start time to first token {answer.time_to_first_token:.2f}s "
        f"(whole answer {answer.total:.2f}s): {answer.text!r}"
    )
    assert answer.text


def test_cold_start_loaded_the_model_from_the_cache_without_downloading(
    cluster: Cluster,
) -> None:
    metrics = scrape_metrics(cluster, NAMESPACE, ready_pod(cluster, NAMESPACE, MODEL))
    assert sample(metrics, "kzero_cache_lookups_total", model_name=MODEL, result="hit") >= 1
    assert sample(metrics, "kzero_cache_lookups_total", model_name=MODEL, result="miss") == 0
    assert sample(metrics, "kzero_cache_download_bytes_total", model_name=MODEL) == 0
