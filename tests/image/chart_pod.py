"""The containers the rendered chart runs, read from its objects, never typed again.

``predictor_container`` is the serving container as KServe builds it from an
InferenceService and its ClusterServingRuntime; ``warm_job_container`` is the
warm Job's. ``tests/image`` runs both with podman (podman_run.py) to check the
image the way a cluster would run it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

# Lists that Kubernetes' strategic merge patch merges by a key instead of
# replacing (the patchMergeKey tags on k8s.io/api/core/v1 Container).
_MERGE_KEYS = {"env": "name", "volumeMounts": "mountPath", "ports": "containerPort"}


class UnsupportedSpec(ValueError):
    """A field the podman stand-in cannot reproduce; the check must not pretend it did."""


@dataclass(frozen=True)
class Probe:
    path: str
    port: int
    period_s: int
    failure_threshold: int

    @property
    def budget_s(self) -> int:
        """How long kubelet lets the probe fail before it gives up on the container."""
        return self.period_s * self.failure_threshold


@dataclass(frozen=True)
class Volume:
    """A volume mounted into the container: ``kind`` is pvc or emptyDir."""

    name: str
    kind: str
    mount_path: str
    read_only: bool
    sub_path: str = ""  # a directory inside the volume, mounted instead of its root


@dataclass(frozen=True)
class Container:
    command: list[str] | None  # None: the image's ENTRYPOINT
    args: list[str]
    env: dict[str, str]
    run_as_user: int | None  # None: the image's USER
    run_as_group: int | None
    read_only_root: bool
    no_new_privileges: bool
    dropped_capabilities: list[str]
    added_capabilities: list[str]
    volumes: list[Volume]
    ports: list[int]
    cpu_limit: str | None
    memory_limit: str | None
    startup_probe: Probe | None
    readiness_probe: Probe | None
    fs_group: int | None  # the pod's fsGroup: the group that owns its volumes


def only(objects: list[dict], kind: str, name: str | None = None) -> dict:
    """The one rendered object of ``kind`` (and ``name``); ValueError otherwise."""
    found = [
        o
        for o in objects
        if o.get("kind") == kind and (name is None or o["metadata"]["name"] == name)
    ]
    if len(found) != 1:
        raise ValueError(f"expected one {kind} {name or ''}, the chart rendered {len(found)}")
    return found[0]


def merge_runtime_container(runtime: dict, isvc: dict) -> dict:
    """KServe's merge of a ServingRuntime container with the InferenceService's.

    kserve pkg/controller/v1beta1/inferenceservice/utils/utils.go,
    MergeRuntimeContainers: a strategic merge patch of the InferenceService's
    container onto the runtime's (kserveutils.MergeContainerWithPatch), then
    the args concatenated, runtime's first.
    """
    merged = _strategic_merge(runtime, isvc)
    merged["args"] = [*runtime.get("args", []), *isvc.get("args", [])]
    return merged


def _strategic_merge(base: Any, patch: Any, key: str | None = None) -> Any:
    if isinstance(base, dict) and isinstance(patch, dict):
        out = copy.deepcopy(base)
        for name, value in patch.items():
            out[name] = _strategic_merge(base[name], value, name) if name in base else value
        return out
    if isinstance(base, list) and isinstance(patch, list) and key in _MERGE_KEYS:
        merge_key = _MERGE_KEYS[key]
        out = [copy.deepcopy(item) for item in base]
        for item in patch:
            at = next((i for i, old in enumerate(out) if old[merge_key] == item[merge_key]), None)
            if at is None:
                out.append(copy.deepcopy(item))
            else:
                out[at] = _strategic_merge(out[at], item)
        return out
    return copy.deepcopy(patch)  # scalars and other lists: the patch replaces


def predictor_container(objects: list[dict], model_name: str) -> Container:
    """The predictor container of ``model_name``'s InferenceService, as KServe builds it."""
    isvc = only(objects, "InferenceService", model_name)
    predictor = isvc["spec"]["predictor"]
    model = dict(predictor["model"])
    runtime = only(objects, "ClusterServingRuntime", model.pop("runtime"))
    model.pop("modelFormat")
    for field in ("storageUri", "storage"):
        if field in model:
            raise UnsupportedSpec(f"{field}: KServe adds a storage initializer the check lacks")
    # KServe's custom container name; the runtime's first container is the one it merges into.
    (runtime_container,) = [
        c for c in runtime["spec"]["containers"] if c["name"] == "kserve-container"
    ]
    merged = merge_runtime_container(runtime_container, model)
    return _container(merged, predictor.get("volumes", []), predictor.get("securityContext", {}))


def warm_job_container(objects: list[dict]) -> Container:
    """The warm Job's one container."""
    job = only(objects, "Job")
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    return _container(container, pod.get("volumes", []), pod.get("securityContext", {}))


def _container(spec: dict, pod_volumes: list[dict], pod_security: dict) -> Container:
    security = {**pod_security, **spec.get("securityContext", {})}
    if security.get("seccompProfile", {}).get("type", "RuntimeDefault") != "RuntimeDefault":
        raise UnsupportedSpec(f"seccompProfile {security['seccompProfile']}")
    capabilities = security.get("capabilities", {})
    limits = spec.get("resources", {}).get("limits", {})
    return Container(
        command=spec.get("command"),
        args=[str(a) for a in spec.get("args", [])],
        env=_env(spec.get("env", [])),
        run_as_user=security.get("runAsUser"),
        run_as_group=security.get("runAsGroup"),
        read_only_root=bool(security.get("readOnlyRootFilesystem", False)),
        # Kubernetes: allowPrivilegeEscalation false sets the no_new_privs flag.
        no_new_privileges=security.get("allowPrivilegeEscalation") is False,
        dropped_capabilities=list(capabilities.get("drop", [])),
        added_capabilities=list(capabilities.get("add", [])),
        volumes=_volumes(spec.get("volumeMounts", []), pod_volumes),
        ports=[int(p["containerPort"]) for p in spec.get("ports", [])],
        cpu_limit=str(limits["cpu"]) if "cpu" in limits else None,
        memory_limit=str(limits["memory"]) if "memory" in limits else None,
        startup_probe=_probe(spec.get("startupProbe")),
        readiness_probe=_probe(spec.get("readinessProbe")),
        fs_group=pod_security.get("fsGroup"),
    )


def _env(entries: list[dict]) -> dict[str, str]:
    env = {}
    for entry in entries:
        if "value" not in entry:
            raise UnsupportedSpec(f"env {entry['name']} has no literal value: {entry}")
        env[entry["name"]] = str(entry["value"])
    return env


def _volumes(mounts: list[dict], pod_volumes: list[dict]) -> list[Volume]:
    by_name = {v["name"]: v for v in pod_volumes}
    volumes = []
    for mount in mounts:
        source = by_name[mount["name"]]
        if "persistentVolumeClaim" in source:
            kind = "pvc"
            read_only = bool(
                mount.get("readOnly") or source["persistentVolumeClaim"].get("readOnly")
            )
        elif "emptyDir" in source:
            kind, read_only = "emptyDir", bool(mount.get("readOnly"))
        else:
            raise UnsupportedSpec(f"volume {mount['name']}: only PVCs and emptyDirs: {source}")
        volumes.append(
            Volume(mount["name"], kind, mount["mountPath"], read_only, mount.get("subPath", ""))
        )
    return volumes


def _probe(spec: dict | None) -> Probe | None:
    if spec is None:
        return None
    if "httpGet" not in spec:
        raise UnsupportedSpec(f"only httpGet probes: {spec}")
    # Kubernetes' defaults: periodSeconds 10, failureThreshold 3.
    return Probe(
        path=spec["httpGet"]["path"],
        port=int(spec["httpGet"]["port"]),
        period_s=int(spec.get("periodSeconds", 10)),
        failure_threshold=int(spec.get("failureThreshold", 3)),
    )
