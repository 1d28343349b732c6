"""config-features: the flags that open Knative's field masks.

Port of knative/serving pkg/apis/config/features.go at knative-v1.21.1.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

# features.go, type Flag and its constants.
ENABLED = "Enabled"
DISABLED = "Disabled"
ALLOWED = "Allowed"
ALLOW_ROOT_BOUNDED = "AllowRootBounded"


@dataclass(frozen=True)
class Features:
    """features.go, type Features. A field left "" is Go's zero Flag, which is
    neither Enabled nor Disabled: Knative's own tests build Features that way,
    and the masks test `!= Disabled`, so "" opens a mask that "Disabled" keeps shut."""

    multi_container: str = ""
    multi_container_probing: str = ""
    pod_spec_affinity: str = ""
    pod_spec_topology_spread_constraints: str = ""
    pod_spec_field_ref: str = ""
    pod_spec_host_aliases: str = ""
    pod_spec_node_selector: str = ""
    pod_spec_runtime_class_name: str = ""
    pod_spec_security_context: str = ""
    pod_spec_share_process_namespace: str = ""
    pod_spec_host_ipc: str = ""
    pod_spec_host_pid: str = ""
    pod_spec_host_network: str = ""
    pod_spec_priority_class_name: str = ""
    pod_spec_scheduler_name: str = ""
    container_spec_add_capabilities: str = ""
    pod_spec_tolerations: str = ""
    pod_spec_volumes_empty_dir: str = ""
    pod_spec_volumes_host_path: str = ""
    pod_spec_volumes_mount_propagation: str = ""
    pod_spec_volumes_csi: str = ""
    pod_spec_volumes_image: str = ""
    pod_spec_init_containers: str = ""
    pod_spec_persistent_volume_claim: str = ""
    pod_spec_persistent_volume_write: str = ""
    queue_proxy_mount_pod_info: str = ""
    queue_proxy_resource_defaults: str = ""
    pod_spec_dns_policy: str = ""
    pod_spec_dns_config: str = ""
    secure_pod_defaults: str = ""
    tag_header_based_routing: str = ""
    auto_detect_http2: str = ""

    def with_(self, **flags: str) -> Features:
        return replace(self, **flags)


def default_features() -> Features:
    """features.go, defaultFeaturesConfig: what a cluster runs with an empty
    config-features (config.FromContextOrDefaults in every mask)."""
    everything_disabled = {field.name: DISABLED for field in fields(Features)}
    return Features(**everything_disabled).with_(
        multi_container=ENABLED, pod_spec_volumes_empty_dir=ENABLED
    )


# features.go, NewFeaturesConfigFromMap: ConfigMap key -> Features field. The
# "kubernetes.*" keys are the Feature* constants of the same file.
KEYS: dict[str, str] = {
    "autodetect-http2": "auto_detect_http2",
    "kubernetes.podspec-persistent-volume-write": "pod_spec_persistent_volume_write",
    "multi-container": "multi_container",
    "multi-container-probing": "multi_container_probing",
    "queueproxy.mount-podinfo": "queue_proxy_mount_pod_info",
    "queueproxy.resource-defaults": "queue_proxy_resource_defaults",
    "secure-pod-defaults": "secure_pod_defaults",
    "tag-header-based-routing": "tag_header_based_routing",
    "kubernetes.containerspec-addcapabilities": "container_spec_add_capabilities",
    "kubernetes.podspec-affinity": "pod_spec_affinity",
    "kubernetes.podspec-dnsconfig": "pod_spec_dns_config",
    "kubernetes.podspec-dnspolicy": "pod_spec_dns_policy",
    "kubernetes.podspec-volumes-emptydir": "pod_spec_volumes_empty_dir",
    "kubernetes.podspec-fieldref": "pod_spec_field_ref",
    "kubernetes.podspec-hostaliases": "pod_spec_host_aliases",
    "kubernetes.podspec-hostipc": "pod_spec_host_ipc",
    "kubernetes.podspec-hostnetwork": "pod_spec_host_network",
    "kubernetes.podspec-hostpid": "pod_spec_host_pid",
    "kubernetes.podspec-volumes-hostpath": "pod_spec_volumes_host_path",
    "kubernetes.podspec-volumes-csi": "pod_spec_volumes_csi",
    "kubernetes.podspec-volumes-image": "pod_spec_volumes_image",
    "kubernetes.podspec-init-containers": "pod_spec_init_containers",
    "kubernetes.podspec-volumes-mount-propagation": "pod_spec_volumes_mount_propagation",
    "kubernetes.podspec-nodeselector": "pod_spec_node_selector",
    "kubernetes.podspec-persistent-volume-claim": "pod_spec_persistent_volume_claim",
    "kubernetes.podspec-priorityclassname": "pod_spec_priority_class_name",
    "kubernetes.podspec-runtimeclassname": "pod_spec_runtime_class_name",
    "kubernetes.podspec-schedulername": "pod_spec_scheduler_name",
    "kubernetes.podspec-securitycontext": "pod_spec_security_context",
    "kubernetes.podspec-shareprocessnamespace": "pod_spec_share_process_namespace",
    "kubernetes.podspec-tolerations": "pod_spec_tolerations",
    "kubernetes.podspec-topologyspreadconstraints": "pod_spec_topology_spread_constraints",
}

# features.go, asFlag and asSecurePodDefaultsFlag: the values each parser takes.
_FLAG_VALUES = (ENABLED, ALLOWED, DISABLED)
_SECURE_POD_DEFAULTS_VALUES = (DISABLED, ALLOW_ROOT_BOUNDED, ENABLED)


class FeatureValueIgnored(ValueError):
    """A value Knative's parser silently ignores (the flag keeps its default)."""


def _parse_flag(key: str, raw: str) -> str | None:
    accepted = _SECURE_POD_DEFAULTS_VALUES if key == "secure-pod-defaults" else _FLAG_VALUES
    # strings.EqualFold: case-insensitive.
    return next((flag for flag in accepted if flag.lower() == raw.lower()), None)


def parse_features(data: dict[str, str], *, strict: bool = True) -> Features:
    """features.go, NewFeaturesConfigFromMap.

    Knative ignores unknown keys and unparseable values without an error (asFlag
    returns nil), so a typo leaves the flag at its default and nobody is told.
    With strict=True (what kzero's checks use) both raise FeatureValueIgnored.
    """
    parsed = default_features()
    for key, raw in data.items():
        if key not in KEYS:
            if strict:
                raise FeatureValueIgnored(f"{key}: not a config-features key Knative reads")
            continue
        flag = _parse_flag(key, raw)
        if flag is None:
            if strict:
                raise FeatureValueIgnored(f"{key}: Knative ignores the value {raw!r}")
            continue
        parsed = parsed.with_(**{KEYS[key]: flag})
    return parsed
