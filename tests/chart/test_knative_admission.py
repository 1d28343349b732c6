"""The predictor pod specs use only fields Knative admits with autoscaling/knative/config-features.yaml.

Knative's webhook rejects pod-spec fields outside its field masks ("must not
set the field(s)"); some fields pass only when a config-features flag is
enabled. The masks below follow knative.dev/serving pkg/apis/serving/
fieldmask.go (v1.15+). A chart field that needs a flag the patch does not
enable would fail at `helm install`, long after `helm template` looked fine.
"""

from __future__ import annotations

import yaml

from .helm_cli import REPO

# Fields KServe reads from the predictor itself (its component extension);
# they never reach the Knative pod spec.
KSERVE_PREDICTOR_FIELDS = {
    "minReplicas", "maxReplicas", "containerConcurrency", "timeout", "labels", "annotations",
    "scaleTarget", "scaleMetric", "canaryTrafficPercent", "logger", "batcher", "model",
}  # fmt: skip
POD_FIELDS_ALWAYS = {
    "serviceAccountName", "containers", "volumes", "imagePullSecrets", "enableServiceLinks",
    "automountServiceAccountToken", "securityContext",
}  # fmt: skip
POD_FIELDS_BY_FLAG = {
    "nodeSelector": "kubernetes.podspec-nodeselector",
    "tolerations": "kubernetes.podspec-tolerations",
    "affinity": "kubernetes.podspec-affinity",
    "runtimeClassName": "kubernetes.podspec-runtimeclassname",
    "initContainers": "kubernetes.podspec-init-containers",
}
VOLUME_TYPES_BY_FLAG = {
    "persistentVolumeClaim": "kubernetes.podspec-persistent-volume-claim",
    "emptyDir": "kubernetes.podspec-emptydir",
}
VOLUME_TYPES_ALWAYS = {"secret", "configMap", "projected"}
# Without kubernetes.podspec-securitycontext, Knative keeps only these at pod level.
POD_SECURITY_FIELDS_DEFAULT = {"runAsNonRoot", "seccompProfile"}
CONTAINER_FIELDS = {
    "name", "args", "command", "env", "envFrom", "image", "imagePullPolicy", "livenessProbe",
    "ports", "readinessProbe", "startupProbe", "resources", "securityContext",
    "terminationMessagePath", "terminationMessagePolicy", "volumeMounts", "workingDir",
}  # fmt: skip
# The container's own fields plus the KServe model fields that never reach the pod.
MODEL_FIELDS = CONTAINER_FIELDS | {"runtime", "modelFormat", "storageUri", "protocolVersion"}


def enabled_features() -> set[str]:
    patch = yaml.safe_load((REPO / "autoscaling" / "knative" / "config-features.yaml").read_text())
    return {flag for flag, value in patch["data"].items() if value == "enabled"}


def problems(service: dict, features: set[str]) -> list[str]:
    predictor = service["spec"]["predictor"]
    found = []
    for field in set(predictor) - KSERVE_PREDICTOR_FIELDS - POD_FIELDS_ALWAYS:
        flag = POD_FIELDS_BY_FLAG.get(field)
        if flag not in features:
            found.append(f"pod field {field} needs {flag or 'a Knative change'}")
    for volume in predictor.get("volumes", []):
        for kind in set(volume) - {"name"} - VOLUME_TYPES_ALWAYS:
            if VOLUME_TYPES_BY_FLAG.get(kind) not in features:
                found.append(
                    f"volume {volume['name']}: {kind} needs {VOLUME_TYPES_BY_FLAG.get(kind)}"
                )
            writable = kind == "persistentVolumeClaim" and not volume[kind].get("readOnly")
            if writable and "kubernetes.podspec-persistent-volume-write" not in features:
                found.append(
                    f"volume {volume['name']}: a writable PVC needs podspec-persistent-volume-write"
                )
    extra = set(predictor.get("securityContext", {})) - POD_SECURITY_FIELDS_DEFAULT
    if extra and "kubernetes.podspec-securitycontext" not in features:
        found.append(
            f"pod securityContext {sorted(extra)} needs kubernetes.podspec-securitycontext"
        )
    for field in set(predictor["model"]) - MODEL_FIELDS:
        found.append(f"container field {field} is not allowed by Knative")
    return found


def test_predictors_use_only_fields_knative_admits(objects: list[dict]) -> None:
    features = enabled_features()
    services = [obj for obj in objects if obj["kind"] == "InferenceService"]
    found = [f"{s['metadata']['name']}: {p}" for s in services for p in problems(s, features)]
    assert not found, "\n".join(found)


def test_the_check_reports_fields_behind_disabled_flags(objects: list[dict]) -> None:
    service = next(obj for obj in objects if obj["kind"] == "InferenceService")
    service = yaml.safe_load(yaml.safe_dump(service))  # a deep copy
    service["spec"]["predictor"]["securityContext"]["runAsUser"] = 1000
    service["spec"]["predictor"]["hostNetwork"] = True
    found = "\n".join(problems(service, features=set()))
    for expected in ("persistentVolumeClaim needs", "emptyDir needs", "runAsUser", "hostNetwork"):
        assert expected in found, found
