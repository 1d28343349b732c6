"""Finds every pod spec in rendered objects, with the container list each one runs."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PodSpec:
    where: str  # "Kind/name" for messages
    pod: dict[str, Any]  # pod-level fields (securityContext, volumes, hostNetwork...)
    containers: list[dict[str, Any]]


def pod_specs(objects: list[dict[str, Any]]) -> Iterator[PodSpec]:
    for obj in objects:
        kind, name = obj["kind"], obj["metadata"]["name"]
        where = f"{kind}/{name}"
        spec = obj.get("spec", {})
        if kind == "Pod":
            yield PodSpec(where, spec, spec.get("containers", []) + spec.get("initContainers", []))
        elif kind in ("Job", "Deployment", "StatefulSet", "DaemonSet"):
            pod = spec["template"]["spec"]
            yield PodSpec(where, pod, pod.get("containers", []) + pod.get("initContainers", []))
        elif kind == "InferenceService":
            # KServe builds the pod from the predictor (pod-level fields) and its
            # `model` container merged over the runtime's container.
            predictor = spec["predictor"]
            containers = [predictor["model"], *predictor.get("containers", [])]
            yield PodSpec(where, predictor, containers)
        elif kind in ("ClusterServingRuntime", "ServingRuntime"):
            yield PodSpec(where, spec, spec["containers"])
