"""What a failed e2e test prints about the cluster: the InferenceService, pods, events."""

from __future__ import annotations

import json

from .cluster import Cluster


def dump_state(cluster: Cluster, namespace: str, model: str) -> str:
    lines = []
    try:
        service = cluster.custom.get_namespaced_custom_object(
            "serving.kserve.io", "v1beta1", namespace, "inferenceservices", model
        )
        lines.append("InferenceService status:")
        lines.append(json.dumps(service.get("status", {}), indent=2))
        for pod in cluster.core.list_namespaced_pod(namespace).items:
            statuses = [
                f"{s.name}: ready={s.ready} restarts={s.restart_count}"
                for s in pod.status.container_statuses or []
            ]
            lines.append(f"pod {pod.metadata.name} {pod.status.phase} {statuses}")
        events = cluster.core.list_namespaced_event(namespace).items
        for event in sorted(events, key=lambda e: str(e.last_timestamp))[-30:]:
            lines.append(
                f"event {event.last_timestamp} {event.involved_object.kind}/"
                f"{event.involved_object.name}: {event.reason}: {event.message}"
            )
    except Exception as exc:  # the dump must never hide the test's own failure
        lines.append(f"(could not read cluster state: {exc})")
    return "\n".join(lines)
