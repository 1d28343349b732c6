"""OpenAI requests to a model through the Knative route (Kourier), as a client would send them."""

from __future__ import annotations

import json
import time
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlsplit

from bench.harness.sse import content, events

from .cluster import INGRESS, Cluster

# A request to a model at zero replicas waits in the activator for a cold start.
REQUEST_TIMEOUT_SECONDS = 600


def route_host(cluster: Cluster, namespace: str, model: str) -> str:
    """The Host header Knative routes on, from the InferenceService's status URL."""
    service = cluster.custom.get_namespaced_custom_object(
        "serving.kserve.io", "v1beta1", namespace, "inferenceservices", model
    )
    status = service.get("status", {})
    # The predictor's own Knative route; without KServe's Istio virtual host
    # (kind uses Kourier) the top-level status.url is the same address.
    url = status.get("components", {}).get("predictor", {}).get("url") or status.get("url")
    assert url, f"InferenceService {model} has no URL yet: {status}"
    return urlsplit(url).netloc


@dataclass(frozen=True)
class StreamedAnswer:
    text: str
    time_to_first_token: float
    total: float


def headers(host: str, key: str | None) -> dict[str, str]:
    """Knative routes on Host; the predictor wants the API key as a bearer token."""
    sent = {"Content-Type": "application/json", "Host": host}
    if key is not None:
        sent["Authorization"] = f"Bearer {key}"
    return sent


def stream_chat(
    host: str, model: str, prompt: str, key: str | None, max_tokens: int = 16
) -> StreamedAnswer:
    """A streaming chat completion; times the first content chunk from the moment of sending."""
    body = {
        "model": model,
        "stream": True,
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": prompt}],
    }
    request = urllib.request.Request(
        f"{INGRESS}/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers=headers(host, key),
    )
    started = time.monotonic()
    first_token_at = None
    pieces = []
    with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_SECONDS) as response:
        for event in events(raw.decode() for raw in response):
            if delta := content(event):
                first_token_at = first_token_at or time.monotonic()
                pieces.append(delta)
    assert first_token_at is not None, "the stream carried no content"
    return StreamedAnswer("".join(pieces), first_token_at - started, time.monotonic() - started)


def chat(host: str, model: str, prompt: str, key: str | None, max_tokens: int = 16) -> dict:
    body = {
        "model": model,
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": prompt}],
    }
    request = urllib.request.Request(
        f"{INGRESS}/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers=headers(host, key),
    )
    with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_SECONDS) as response:
        return json.load(response)
