"""Every pod the chart creates meets the Kubernetes "restricted" Pod Security Standard.

The rules are the restricted profile's (kubernetes.io/docs/concepts/security/
pod-security-standards), plus two of ours: a read-only root filesystem and no
service-account token (no kzero pod talks to the API server).
"""

from __future__ import annotations

from typing import Any

from .pod_specs import PodSpec, pod_specs

ALLOWED_VOLUME_TYPES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
    "persistentVolumeClaim", "projected", "secret",
}  # fmt: skip
HOST_NAMESPACES = ("hostNetwork", "hostPID", "hostIPC")


def _effective(spec: PodSpec, container: dict[str, Any], key: str) -> Any:
    """A container's security setting, falling back to the pod's (as the kubelet does)."""
    own = container.get("securityContext", {})
    return own[key] if key in own else spec.pod.get("securityContext", {}).get(key)


def _violations(spec: PodSpec) -> list[str]:
    found = []
    for key in HOST_NAMESPACES:
        if spec.pod.get(key):
            found.append(f"{key} is set")
    for volume in spec.pod.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= ALLOWED_VOLUME_TYPES:
            found.append(f"volume {volume['name']} uses {kinds - ALLOWED_VOLUME_TYPES}")
    if spec.pod.get("automountServiceAccountToken") is not False and spec.where.split("/")[0] in (
        "Pod", "Job", "InferenceService",
    ):  # fmt: skip
        found.append("automountServiceAccountToken is not false")
    for container in spec.containers:
        name = container.get("name", "model")
        context = container.get("securityContext", {})
        if context.get("privileged"):
            found.append(f"{name}: privileged")
        if context.get("allowPrivilegeEscalation") is not False:
            found.append(f"{name}: allowPrivilegeEscalation is not false")
        if context.get("capabilities", {}).get("drop") != ["ALL"]:
            found.append(f"{name}: capabilities.drop is not [ALL]")
        if set(context.get("capabilities", {}).get("add", [])) - {"NET_BIND_SERVICE"}:
            found.append(f"{name}: adds capabilities")
        if _effective(spec, container, "runAsNonRoot") is not True:
            found.append(f"{name}: runAsNonRoot is not true")
        if _effective(spec, container, "runAsUser") == 0:
            found.append(f"{name}: runAsUser is 0")
        seccomp = (_effective(spec, container, "seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            found.append(f"{name}: seccompProfile.type is {seccomp}")
        if context.get("readOnlyRootFilesystem") is not True:
            found.append(f"{name}: readOnlyRootFilesystem is not true")
        for port in container.get("ports", []):
            if "hostPort" in port:
                found.append(f"{name}: hostPort {port['hostPort']}")
    return [f"{spec.where}: {problem}" for problem in found]


def test_every_pod_spec_meets_the_restricted_profile(objects: list[dict]) -> None:
    specs = list(pod_specs(objects))
    kinds = {spec.where.split("/")[0] for spec in specs}
    assert {"InferenceService", "ClusterServingRuntime"} <= kinds or "InferenceService" in kinds
    violations = [v for spec in specs for v in _violations(spec)]
    assert not violations, "\n".join(violations)


def test_the_check_catches_an_insecure_pod() -> None:
    insecure = PodSpec(
        "Pod/bad",
        {"hostNetwork": True, "volumes": [{"name": "h", "hostPath": {"path": "/"}}]},
        [{"name": "c", "securityContext": {"privileged": True, "runAsUser": 0}}],
    )
    problems = "\n".join(_violations(insecure))
    for expected in (
        "hostNetwork", "hostPath", "privileged", "allowPrivilegeEscalation", "drop",
        "runAsNonRoot", "runAsUser is 0", "seccompProfile", "readOnlyRootFilesystem",
        "automountServiceAccountToken",
    ):  # fmt: skip
        assert expected in problems, f"{expected} not reported in:\n{problems}"
