"""Knative's field masks: which fields of a pod spec its webhook keeps.

Port of knative/serving pkg/apis/serving/fieldmask.go at knative-v1.21.1. Each
mask takes the JSON object (as it reaches Knative's webhook) and returns the
copy Knative's mask would make; `disallowed` then reports what the copy lost,
as knative.dev/pkg apis.CheckDisallowedFields does (kmp.CompareSetFields).
"""

from __future__ import annotations

from typing import Any

from .features import ALLOW_ROOT_BOUNDED, DISABLED, ENABLED, Features

Obj = dict[str, Any]

# Go fields that are pointers (*bool, *int64, *string): a JSON false/0/"" there
# is still "set". Every other scalar is a Go value, and its zero is unset.
_POINTER_SCALARS = {
    "automountServiceAccountToken", "enableServiceLinks", "shareProcessNamespace",
    "runtimeClassName", "terminationGracePeriodSeconds", "activeDeadlineSeconds", "priority",
    "setHostnameAsFQDN", "hostUsers", "preemptionPolicy", "privileged", "runAsUser",
    "runAsGroup", "runAsNonRoot", "readOnlyRootFilesystem", "allowPrivilegeEscalation",
    "procMount", "fsGroup", "fsGroupChangePolicy", "supplementalGroupsPolicy",
    "mountPropagation", "recursiveReadOnly", "optional", "mode", "defaultMode",
    "expirationSeconds", "sizeLimit",
}  # fmt: skip
# Go maps: client-go's omitempty drops an empty one, like an empty list.
_MAPS = {"nodeSelector", "limits", "requests", "overhead"}


def is_set(key: str, value: Any) -> bool:
    """Whether a JSON field counts as set once KServe has serialised it for Knative."""
    if value is None:
        return False
    if isinstance(value, list):
        return bool(value)
    if isinstance(value, dict):
        return bool(value) or key not in _MAPS  # a pointer to an empty struct is set
    return key in _POINTER_SCALARS or value not in (False, 0, "")


def disallowed(obj: Obj, masked: Obj) -> list[str]:
    """knative.dev/pkg apis.CheckDisallowedFields: fields set in obj that the mask dropped or changed."""
    return sorted(
        key for key, value in obj.items() if is_set(key, value) and masked.get(key) != value
    )


def _keep(obj: Obj, *keys: str) -> Obj:
    return {key: obj[key] for key in keys if key in obj}


def _open(flag: str) -> bool:
    """The masks' `cfg.Features.X != config.Disabled`."""
    return flag != DISABLED


# --- PodSpec --------------------------------------------------------------


def pod_spec_mask(features: Features, pod: Obj) -> Obj:
    """fieldmask.go, PodSpecMask."""
    out = _keep(pod, "serviceAccountName", "containers", "volumes", "imagePullSecrets",
                "enableServiceLinks")  # fmt: skip
    # "Only allow setting AutomountServiceAccountToken to false".
    if pod.get("automountServiceAccountToken") is False:
        out["automountServiceAccountToken"] = False
    by_flag = {
        "affinity": features.pod_spec_affinity,
        "topologySpreadConstraints": features.pod_spec_topology_spread_constraints,
        "hostAliases": features.pod_spec_host_aliases,
        "nodeSelector": features.pod_spec_node_selector,
        "runtimeClassName": features.pod_spec_runtime_class_name,
        "tolerations": features.pod_spec_tolerations,
        "shareProcessNamespace": features.pod_spec_share_process_namespace,
        "priorityClassName": features.pod_spec_priority_class_name,
        "schedulerName": features.pod_spec_scheduler_name,
        "initContainers": features.pod_spec_init_containers,
        "dnsPolicy": features.pod_spec_dns_policy,
        "dnsConfig": features.pod_spec_dns_config,
        "hostIPC": features.pod_spec_host_ipc,
        "hostPID": features.pod_spec_host_pid,
        "hostNetwork": features.pod_spec_host_network,
    }
    out.update(_keep(pod, *(field for field, flag in by_flag.items() if _open(flag))))
    # The pod securityContext passes here when either flag is open; its fields
    # are masked again by PodSecurityContextMask (ValidatePodSecurityContext).
    if _open(features.pod_spec_security_context) or _open(features.secure_pod_defaults):
        out.update(_keep(pod, "securityContext"))
    return out


def pod_security_context_mask(features: Features, context: Obj) -> Obj:
    """fieldmask.go, PodSecurityContextMask.

    Without kubernetes.podspec-securitycontext only seccompProfile survives, and
    only when secure-pod-defaults is Enabled or AllowRootBounded, and only with
    type RuntimeDefault or Unconfined (the copy holds the type alone).
    runAsNonRoot at pod level is refused unless podspec-securitycontext is on.
    """
    out: Obj = {}
    if features.secure_pod_defaults in (ENABLED, ALLOW_ROOT_BOUNDED):
        seccomp_type = (context.get("seccompProfile") or {}).get("type")
        if "seccompProfile" in context and seccomp_type in ("RuntimeDefault", "Unconfined"):
            out["seccompProfile"] = {"type": seccomp_type}
    if features.pod_spec_security_context == DISABLED:
        return out
    out.update(_keep(context, "runAsUser", "runAsGroup", "runAsNonRoot", "fsGroup",
                     "supplementalGroups", "seccompProfile"))  # fmt: skip
    return out


# --- Containers -----------------------------------------------------------


def container_mask(container: Obj) -> Obj:
    """fieldmask.go, ContainerMask (lifecycle, stdin, tty, volumeDevices... are refused)."""
    return _keep(container, "name", "args", "command", "env", "workingDir", "envFrom", "image",
                 "imagePullPolicy", "livenessProbe", "ports", "readinessProbe", "resources",
                 "securityContext", "startupProbe", "terminationMessagePath",
                 "terminationMessagePolicy", "volumeMounts")  # fmt: skip


def security_context_mask(context: Obj) -> Obj:
    """fieldmask.go, SecurityContextMask: privileged only as false; no seLinuxOptions, procMount..."""
    out = _keep(context, "capabilities", "readOnlyRootFilesystem", "runAsUser", "runAsGroup",
                "runAsNonRoot", "allowPrivilegeEscalation", "seccompProfile")  # fmt: skip
    if context.get("privileged") is False:
        out["privileged"] = False
    return out


def capabilities_mask(features: Features, capabilities: Obj) -> Obj:
    """fieldmask.go, CapabilitiesMask: `add` needs kubernetes.containerspec-addcapabilities,
    except exactly [NET_BIND_SERVICE] under secure-pod-defaults."""
    out = _keep(capabilities, "drop")
    if features.container_spec_add_capabilities == ENABLED:
        out.update(_keep(capabilities, "add"))
    elif features.secure_pod_defaults in (ENABLED, ALLOW_ROOT_BOUNDED) and capabilities.get(
        "add"
    ) == ["NET_BIND_SERVICE"]:
        out["add"] = ["NET_BIND_SERVICE"]
    return out


def volume_mount_mask(features: Features, mount: Obj) -> Obj:
    """fieldmask.go, VolumeMountMask (no subPathExpr, no recursiveReadOnly)."""
    out = _keep(mount, "name", "readOnly", "mountPath", "subPath")
    if _open(features.pod_spec_volumes_mount_propagation):
        out.update(_keep(mount, "mountPropagation"))
    return out


def probe_mask(probe: Obj) -> Obj:
    """fieldmask.go, ProbeMask; the handler is inline in JSON, so HandlerMask's fields are kept too."""
    return _keep(probe, *_HANDLER_FIELDS, "initialDelaySeconds", "timeoutSeconds",
                 "periodSeconds", "successThreshold", "failureThreshold",
                 "terminationGracePeriodSeconds")  # fmt: skip


_HANDLER_FIELDS = ("exec", "httpGet", "tcpSocket", "grpc")


def handler_mask(probe: Obj) -> Obj:
    """fieldmask.go, HandlerMask, applied to the handler part of a probe."""
    return _keep(probe, *_HANDLER_FIELDS)


def http_get_action_mask(action: Obj) -> Obj:
    """fieldmask.go, HTTPGetActionMask."""
    return _keep(action, "host", "path", "scheme", "httpHeaders", "port")


def tcp_socket_action_mask(action: Obj) -> Obj:
    """fieldmask.go, TCPSocketActionMask."""
    return _keep(action, "host", "port")


def grpc_action_mask(action: Obj) -> Obj:
    """fieldmask.go, GRPCActionMask."""
    return _keep(action, "port", "service")


def exec_action_mask(action: Obj) -> Obj:
    """fieldmask.go, ExecActionMask."""
    return _keep(action, "command")


def container_port_mask(port: Obj) -> Obj:
    """fieldmask.go, ContainerPortMask: no hostIP, no hostPort."""
    return _keep(port, "containerPort", "name", "protocol")


def env_var_mask(env: Obj) -> Obj:
    """fieldmask.go, EnvVarMask."""
    return _keep(env, "name", "value", "valueFrom")


def env_var_source_mask(source: Obj, field_ref: bool) -> Obj:
    """fieldmask.go, EnvVarSourceMask: fieldRef/resourceFieldRef need kubernetes.podspec-fieldref."""
    out = _keep(source, "configMapKeyRef", "secretKeyRef")
    if field_ref:
        out.update(_keep(source, "fieldRef", "resourceFieldRef"))
    return out


def env_from_source_mask(source: Obj) -> Obj:
    """fieldmask.go, EnvFromSourceMask."""
    return _keep(source, "prefix", "configMapRef", "secretRef")


def env_source_ref_mask(ref: Obj) -> Obj:
    """fieldmask.go, ConfigMapEnvSourceMask and SecretEnvSourceMask (LocalObjectReference inline)."""
    return _keep(ref, "optional", "name")


def resource_requirements_mask(resources: Obj) -> Obj:
    """fieldmask.go, ResourceRequirementsMask: no `claims`."""
    return _keep(resources, "limits", "requests")


# --- Volumes --------------------------------------------------------------

_VOLUME_SOURCES = (
    "secret", "configMap", "projected", "emptyDir", "persistentVolumeClaim", "hostPath", "csi",
    "image", "nfs", "iscsi", "glusterfs", "rbd", "flexVolume", "cinder", "cephfs", "flocker",
    "downwardAPI", "fc", "azureFile", "vsphereVolume", "quobyte", "azureDisk",
    "photonPersistentDisk", "portworxVolume", "scaleIO", "storageos", "ephemeral",
    "gcePersistentDisk", "awsElasticBlockStore", "gitRepo",
)  # fmt: skip


def volume_mask(volume: Obj) -> Obj:
    """fieldmask.go, VolumeMask: the name and the (inline) VolumeSource."""
    return _keep(volume, "name", *_VOLUME_SOURCES)


def volume_source_mask(features: Features, volume: Obj) -> Obj:
    """fieldmask.go, VolumeSourceMask: secret, configMap, projected always; the
    rest each behind its flag ("Too many disallowed fields to list")."""
    out = _keep(volume, "secret", "configMap", "projected")
    by_flag = {
        "emptyDir": features.pod_spec_volumes_empty_dir,
        "persistentVolumeClaim": features.pod_spec_persistent_volume_claim,
        "hostPath": features.pod_spec_volumes_host_path,
        "csi": features.pod_spec_volumes_csi,
        "image": features.pod_spec_volumes_image,
    }
    out.update(_keep(volume, *(source for source, flag in by_flag.items() if _open(flag))))
    return out


def volume_projection_mask(projection: Obj) -> Obj:
    """fieldmask.go, VolumeProjectionMask."""
    return _keep(projection, "secret", "configMap", "serviceAccountToken", "downwardAPI")


def object_projection_mask(projection: Obj) -> Obj:
    """fieldmask.go, ConfigMapProjectionMask and SecretProjectionMask (LocalObjectReference inline)."""
    return _keep(projection, "name", "items", "optional")


def service_account_token_projection_mask(projection: Obj) -> Obj:
    """fieldmask.go, ServiceAccountTokenProjectionMask."""
    return _keep(projection, "audience", "expirationSeconds", "path")


def downward_api_projection_mask(projection: Obj) -> Obj:
    """fieldmask.go, DownwardAPIProjectionMask."""
    return _keep(projection, "items")


def downward_api_volume_file_mask(item: Obj) -> Obj:
    """fieldmask.go, DownwardAPIVolumeFileMask."""
    return _keep(item, "fieldRef", "resourceFieldRef", "path", "mode")


def key_to_path_mask(item: Obj) -> Obj:
    """fieldmask.go, KeyToPathMask."""
    return _keep(item, "key", "path", "mode")
