"""Predictor pods: listing, waiting for zero with a watch, and reading /metrics by port-forward."""

from __future__ import annotations

import re
import time

from kubernetes import watch
from kubernetes.stream import portforward

from .cluster import Cluster

PREDICTOR_PORT = 8080


def selector(model: str) -> str:
    return f"serving.kserve.io/inferenceservice={model}"


def predictor_pods(cluster: Cluster, namespace: str, model: str) -> list:
    pods = cluster.core.list_namespaced_pod(namespace, label_selector=selector(model)).items
    return [pod for pod in pods if pod.metadata.deletion_timestamp is None]


def ready_pod(cluster: Cluster, namespace: str, model: str) -> str:
    for pod in predictor_pods(cluster, namespace, model):
        if any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or []):
            return pod.metadata.name
    raise AssertionError(f"no ready predictor pod for {model}")


def wait_for_zero_pods(cluster: Cluster, namespace: str, model: str, timeout: float) -> float:
    """Seconds until no predictor pod exists at all (terminated and deleted)."""
    started = time.monotonic()
    listed = cluster.core.list_namespaced_pod(namespace, label_selector=selector(model))
    remaining = {pod.metadata.name for pod in listed.items}
    if not remaining:
        return 0.0
    stream = watch.Watch()
    # Watch from the list's resourceVersion, so a deletion in between is not missed.
    for event in stream.stream(
        cluster.core.list_namespaced_pod,
        namespace,
        label_selector=selector(model),
        resource_version=listed.metadata.resource_version,
        timeout_seconds=int(timeout),
    ):
        name = event["object"].metadata.name
        if event["type"] == "DELETED":
            remaining.discard(name)
        else:
            remaining.add(name)
        if not remaining:
            stream.stop()
            return time.monotonic() - started
    raise AssertionError(f"{model} still has pods {sorted(remaining)} after {timeout:.0f}s")


def scrape_metrics(cluster: Cluster, namespace: str, pod: str) -> str:
    """GET /metrics on the predictor container, through a port-forward (no kubectl)."""
    forward = portforward(
        cluster.core.connect_get_namespaced_pod_portforward,
        pod,
        namespace,
        ports=str(PREDICTOR_PORT),
    )
    sock = forward.socket(PREDICTOR_PORT)
    sock.settimeout(30)
    sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    sock.close()
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head[:200]
    if b"transfer-encoding: chunked" in head.lower():
        body = _dechunk(body)
    return body.decode()


def _dechunk(body: bytes) -> bytes:
    out, rest = [], body
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out.append(rest[:size])
        rest = rest[size + 2 :]
    return b"".join(out)


def sample(metrics: str, name: str, **labels: str) -> float:
    """Sum of the samples of one series whose labels include `labels` (0 when absent)."""
    total = 0.0
    for line in metrics.splitlines():
        match = re.match(rf"^{re.escape(name)}(\{{(.*)\}})?\s+(\S+)$", line)
        if not match:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
        if all(found.get(key) == value for key, value in labels.items()):
            total += float(match.group(3))
    return total
