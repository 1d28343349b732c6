"""The pod spec KServe hands to Knative for an InferenceService's predictor.

KServe (Knative mode) builds the Knative Service's pod template from the
predictor and its ServingRuntime; Knative's webhook then judges that pod spec,
not the InferenceService. Port of kserve/kserve (master aaac4e29, just before
0.21.0) pkg/controller/v1beta1/inferenceservice/components/predictor.go,
Predictor.buildPodSpec, with MergeServingRuntimeAndInferenceServiceSpecs,
MergeRuntimeContainers and MergePodSpec of
pkg/controller/v1beta1/inferenceservice/utils/utils.go:

- the predictor's pod-level fields (those of a core PodSpec) are strategic-merged
  over the runtime's nodeSelector, affinity, tolerations, volumes,
  imagePullSecrets and schedulerName;
- the model's container fields are strategic-merged over the runtime's
  `kserve-container`, and the args are concatenated (runtime first).
"""

from __future__ import annotations

import copy
from typing import Any

import kubernetes.client.models as k8s

Obj = dict[str, Any]

POD_SPEC_FIELDS = set(k8s.V1PodSpec.attribute_map.values())
CONTAINER_FIELDS = set(k8s.V1Container.attribute_map.values())
# MergePodSpec: what a ServingRuntimePodSpec contributes to the pod.
RUNTIME_POD_FIELDS = ("nodeSelector", "affinity", "tolerations", "volumes", "imagePullSecrets",
                      "schedulerName")  # fmt: skip
# Kubernetes' patchMergeKey for the lists a strategic merge patch merges by key
# (k8s.io/api/core/v1 types.go); other lists are replaced.
MERGE_KEYS = {"env": "name", "volumeMounts": "mountPath", "ports": "containerPort",
              "volumes": "name", "imagePullSecrets": "name"}  # fmt: skip
PREDICTOR_CONTAINER = "kserve-container"  # constants.InferenceServiceContainerName


def strategic_merge(base: Obj, patch: Obj) -> Obj:
    """A strategic merge patch of `patch` over `base` for the fields used here."""
    merged = copy.deepcopy(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = strategic_merge(merged[key], value)
        elif key in MERGE_KEYS and isinstance(value, list) and isinstance(merged.get(key), list):
            by_key = {item[MERGE_KEYS[key]]: item for item in merged[key]}
            for item in value:
                name = item[MERGE_KEYS[key]]
                by_key[name] = strategic_merge(by_key[name], item) if name in by_key else item
            merged[key] = list(by_key.values())
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def runtime_for(service: Obj, runtimes: dict[str, Obj]) -> Obj:
    name = service["spec"]["predictor"]["model"]["runtime"]
    if name not in runtimes:
        raise LookupError(f"{service['metadata']['name']}: no ServingRuntime named {name}")
    return runtimes[name]


def knative_pod_spec(service: Obj, runtime: Obj) -> Obj:
    """Predictor.buildPodSpec for a predictor with `model` and no transformer."""
    predictor = service["spec"]["predictor"]
    runtime_spec = runtime["spec"]
    runtime_pod = {f: runtime_spec[f] for f in RUNTIME_POD_FIELDS if f in runtime_spec}
    predictor_pod = {f: v for f, v in predictor.items() if f in POD_SPEC_FIELDS}
    pod = strategic_merge(runtime_pod, predictor_pod)
    (runtime_container,) = [
        c for c in runtime_spec["containers"] if c["name"] == PREDICTOR_CONTAINER
    ]
    model_container = {f: v for f, v in predictor["model"].items() if f in CONTAINER_FIELDS}
    container = strategic_merge(runtime_container, model_container)
    container["args"] = runtime_container.get("args", []) + model_container.get("args", [])
    container["name"] = PREDICTOR_CONTAINER
    others = [c for c in runtime_spec["containers"] if c["name"] != PREDICTOR_CONTAINER]
    pod["containers"] = [container, *others, *predictor.get("containers", [])]
    return pod


def revision_annotations(service: Obj, runtime: Obj) -> dict[str, str]:
    """The annotations KServe puts on the Knative revision template.

    Predictor.buildObjectMeta (components/predictor.go) unites the runtime's
    annotations, the InferenceService's and the predictor's, in that priority;
    then SetAutoScalingAnnotations (pkg/controller/v1alpha1/utils/utils.go)
    adds the KPA class when none is set, min-scale from minReplicas (1 when
    unset: constants.DefaultMinReplicas), max-scale from a non-zero
    maxReplicas, and target/metric from scaleTarget/scaleMetric.
    """
    predictor = service["spec"]["predictor"]
    annotations = {
        **runtime["spec"].get("annotations", {}),
        **service["metadata"].get("annotations", {}),
        **predictor.get("annotations", {}),
    }
    annotations.setdefault("autoscaling.knative.dev/class", "kpa.autoscaling.knative.dev")
    if "scaleTarget" in predictor:
        annotations["autoscaling.knative.dev/target"] = str(predictor["scaleTarget"])
    if "scaleMetric" in predictor:
        annotations["autoscaling.knative.dev/metric"] = predictor["scaleMetric"]
    annotations["autoscaling.knative.dev/min-scale"] = str(predictor.get("minReplicas", 1))
    if predictor.get("maxReplicas", 0) != 0:
        annotations["autoscaling.knative.dev/max-scale"] = str(predictor["maxReplicas"])
    return annotations
