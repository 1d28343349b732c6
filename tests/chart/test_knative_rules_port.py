"""The Knative port (tests/chart/knative_rules) agrees with Knative's own tests.

Each case replays one of knative/serving's test cases at knative-v1.21.1, named
after its file and test function, with the outcome Knative's test expects.
Go's Features{...} literals leave unnamed flags at "" (not Disabled), and
context.Background() means the defaults: both are kept as Knative has them.
"""

from __future__ import annotations

import pytest

from .knative_rules import fieldmask as mask
from .knative_rules.annotations import validate_annotations
from .knative_rules.configmaps import parse_autoscaler
from .knative_rules.features import (
    ALLOW_ROOT_BOUNDED,
    DISABLED,
    ENABLED,
    Features,
    FeatureValueIgnored,
    default_features,
    parse_features,
)
from .knative_rules.validation import (
    validate_pod_security_context,
    validate_pod_spec,
    validate_volume,
)

BUSYBOX = [{"image": "busybox"}]
FULL_POD_SECURITY_CONTEXT = {
    "seLinuxOptions": {"level": "s0"}, "windowsOptions": {"runAsUserName": "x"},
    "supplementalGroups": [1], "sysctls": [{"name": "a", "value": "b"}], "runAsUser": 1,
    "runAsGroup": 1, "runAsNonRoot": True, "fsGroup": 1,
    "seccompProfile": {"type": "RuntimeDefault"},
}  # fmt: skip


def errors(found: list) -> list[str]:
    return [str(error) for error in found]


# --- fieldmask_test.go ------------------------------------------------------


def test_pod_security_context_mask_keeps_only_seccomp_under_secure_pod_defaults() -> None:
    # fieldmask_test.go, TestPodSecurityContextMask: RunAsNonRoot is dropped.
    features = Features(secure_pod_defaults=ENABLED, pod_spec_security_context=DISABLED)
    masked = mask.pod_security_context_mask(features, FULL_POD_SECURITY_CONTEXT)
    assert masked == {"seccompProfile": {"type": "RuntimeDefault"}}


def test_pod_security_context_mask_with_the_feature_enabled() -> None:
    # fieldmask_test.go, TestPodSecurityContextMask_FeatureEnabled.
    masked = mask.pod_security_context_mask(
        Features(pod_spec_security_context=ENABLED), FULL_POD_SECURITY_CONTEXT
    )
    assert masked == {
        "runAsUser": 1, "runAsGroup": 1, "runAsNonRoot": True, "fsGroup": 1,
        "supplementalGroups": [1], "seccompProfile": {"type": "RuntimeDefault"},
    }  # fmt: skip


@pytest.mark.parametrize(
    ("secure_pod_defaults", "seccomp", "kept"),
    [
        # TestPodSecurityContextMask_SecurePodDefaultsEnabled: opting out to Unconfined.
        (ENABLED, "Unconfined", True),
        # TestPodSecurityContextMask_SecurePodDefaults_AllowRootBounded.
        (ALLOW_ROOT_BOUNDED, "RuntimeDefault", True),
        # PodSecurityContextMask: Localhost is not among the two kept types.
        (ENABLED, "Localhost", False),
    ],
)
def test_pod_security_context_mask_seccomp_types(
    secure_pod_defaults: str, seccomp: str, kept: bool
) -> None:
    features = Features(secure_pod_defaults=secure_pod_defaults, pod_spec_security_context=DISABLED)
    context = {**FULL_POD_SECURITY_CONTEXT, "seccompProfile": {"type": seccomp}}
    expected = {"seccompProfile": {"type": seccomp}} if kept else {}
    assert mask.pod_security_context_mask(features, context) == expected


@pytest.mark.parametrize("secure_pod_defaults", [ENABLED, ALLOW_ROOT_BOUNDED])
@pytest.mark.parametrize(
    ("add", "kept"),
    [(None, None), (["NET_BIND_SERVICE"], ["NET_BIND_SERVICE"]), (["CHOWN"], None)],
    ids=["empty", "allows NET_BIND_SERVICE capability", "prevents restricted fields"],
)
def test_capabilities_mask_under_secure_pod_defaults(
    secure_pod_defaults: str, add: list[str] | None, kept: list[str] | None
) -> None:
    # TestCapabilitiesMask_SecurePodDefaultsEnabled and ..._AllowRootBounded.
    masked = mask.capabilities_mask(Features(secure_pod_defaults=secure_pod_defaults), {"add": add})
    assert masked.get("add") == kept


def test_security_context_mask_drops_privileged_true_and_selinux() -> None:
    # fieldmask_test.go, TestSecurityContextMask.
    context = {
        "runAsUser": 1, "capabilities": {}, "privileged": True, "seLinuxOptions": {},
        "runAsGroup": 2, "runAsNonRoot": True, "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False, "procMount": "Unmasked",
        "seccompProfile": {"type": "RuntimeDefault"}, "windowsOptions": {},
    }  # fmt: skip
    assert mask.security_context_mask(context) == {
        "capabilities": {}, "runAsUser": 1, "runAsGroup": 2, "runAsNonRoot": True,
        "readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
        "seccompProfile": {"type": "RuntimeDefault"},
    }  # fmt: skip
    assert mask.disallowed(context, mask.security_context_mask(context)) == [
        "privileged", "procMount", "seLinuxOptions", "windowsOptions",
    ]  # fmt: skip


def test_pod_spec_mask_strips_init_containers_by_default() -> None:
    # fieldmask_test.go, TestPodSpecMask (context.Background(): the defaults).
    pod = {
        "serviceAccountName": "default", "imagePullSecrets": [{"name": "foo"}],
        "containers": [{"image": "helloworld"}],
        "volumes": [{"name": "the-name", "secret": {"secretName": "foo"}}],
        "initContainers": [{"image": "busybox"}],
    }  # fmt: skip
    masked = mask.pod_spec_mask(default_features(), pod)
    assert masked == {k: v for k, v in pod.items() if k != "initContainers"}


def test_volume_source_mask_drops_nfs() -> None:
    # fieldmask_test.go, TestVolumeSourceMask.
    volume = {"secret": {}, "configMap": {}, "nfs": {}}
    assert mask.volume_source_mask(default_features(), volume) == {"secret": {}, "configMap": {}}


def test_container_mask_drops_lifecycle_stdin_tty_and_volume_devices() -> None:
    # fieldmask_test.go, TestContainerMask.
    container = {
        "args": ["hello"], "command": ["world"], "env": [{}], "envFrom": [{}],
        "image": "python", "imagePullPolicy": "Always", "livenessProbe": {}, "ports": [{}],
        "readinessProbe": {}, "resources": {}, "securityContext": {}, "startupProbe": {},
        "terminationMessagePath": "/", "terminationMessagePolicy": "File",
        "volumeMounts": [{}], "workingDir": "/app", "name": "foo", "lifecycle": {},
        "stdin": True, "stdinOnce": True, "tty": True, "volumeDevices": [{"name": "d"}],
    }  # fmt: skip
    assert mask.disallowed(container, mask.container_mask(container)) == [
        "lifecycle", "stdin", "stdinOnce", "tty", "volumeDevices",
    ]  # fmt: skip


def test_volume_mount_mask_needs_the_mount_propagation_feature() -> None:
    # fieldmask_test.go, TestVolumeMountMask and TestVolumeMountMask_FeatMountPropagation.
    mount = {"name": "a", "readOnly": True, "mountPath": "/a", "subPath": "b",
             "mountPropagation": "HostToContainer", "subPathExpr": "$(X)"}  # fmt: skip
    assert mask.disallowed(mount, mask.volume_mount_mask(default_features(), mount)) == [
        "mountPropagation", "subPathExpr",
    ]  # fmt: skip
    enabled = default_features().with_(pod_spec_volumes_mount_propagation=ENABLED)
    assert mask.disallowed(mount, mask.volume_mount_mask(enabled, mount)) == ["subPathExpr"]


def test_container_port_mask_drops_host_ports() -> None:
    # fieldmask_test.go, TestContainerPortMask.
    port = {
        "containerPort": 42,
        "name": "foo",
        "protocol": "TCP",
        "hostIP": "1.2.3.4",
        "hostPort": 43,
    }
    assert mask.disallowed(port, mask.container_port_mask(port)) == ["hostIP", "hostPort"]


def test_env_var_source_mask_needs_fieldref_for_field_refs() -> None:
    # fieldmask_test.go, TestEnvVarSourceMask (with and without fieldRef).
    source = {"configMapKeyRef": {}, "secretKeyRef": {}, "fieldRef": {}, "resourceFieldRef": {}}
    assert mask.disallowed(source, mask.env_var_source_mask(source, False)) == [
        "fieldRef", "resourceFieldRef",
    ]  # fmt: skip
    assert mask.disallowed(source, mask.env_var_source_mask(source, True)) == []


# --- k8s_validation_test.go -------------------------------------------------

# TestPodSpecFeatureValidation: each field is refused with the default flags and
# admitted once its flag is enabled.
FEATURE_FIELDS = [
    ("affinity", {"nodeAffinity": {}}, "pod_spec_affinity"),
    ("topologySpreadConstraints", [{"maxSkew": 1}], "pod_spec_topology_spread_constraints"),
    ("dnsPolicy", "Default", "pod_spec_dns_policy"),
    ("dnsConfig", {"nameservers": ["1.2.3.4"]}, "pod_spec_dns_config"),
    ("hostAliases", [{"ip": "127.0.0.1"}], "pod_spec_host_aliases"),
    ("nodeSelector", {"kubernetes.io/arch": "amd64"}, "pod_spec_node_selector"),
    ("tolerations", [{"key": "key", "effect": "NoSchedule"}], "pod_spec_tolerations"),
    ("runtimeClassName", "test", "pod_spec_runtime_class_name"),
    ("securityContext", {}, "pod_spec_security_context"),
    ("priorityClassName", "foo", "pod_spec_priority_class_name"),
    ("schedulerName", "foo", "pod_spec_scheduler_name"),
    ("shareProcessNamespace", True, "pod_spec_share_process_namespace"),
]


@pytest.mark.parametrize(
    ("field", "value", "flag"), FEATURE_FIELDS, ids=[f[0] for f in FEATURE_FIELDS]
)
def test_pod_spec_feature_validation(field: str, value: object, flag: str) -> None:
    pod = {field: value, "containers": BUSYBOX}
    assert errors(validate_pod_spec(default_features(), pod)) == [
        f"must not set the field(s): {field}"
    ]
    assert validate_pod_spec(default_features().with_(**{flag: ENABLED}), pod) == []
    assert validate_pod_spec(default_features(), {"containers": BUSYBOX}) == []


def test_pod_security_context_is_admitted_whole_with_the_feature() -> None:
    # TestPodSpecSecurityContext_FeatureEnabled_AllowsPodSecurityContext.
    features = default_features().with_(pod_spec_security_context=ENABLED)
    pod = {"securityContext": {"runAsNonRoot": False}, "containers": BUSYBOX}
    assert validate_pod_spec(features, pod) == []


@pytest.mark.parametrize(
    ("context", "expected"),
    [
        (None, []),
        (
            {
                "seLinuxOptions": {"level": "s0"},
                "windowsOptions": {"x": 1},
                "sysctls": [{"name": "a"}],
            },
            [
                "must not set the field(s): seLinuxOptions",
                "must not set the field(s): sysctls",
                "must not set the field(s): windowsOptions",
            ],
        ),
        ({"runAsUser": 2**31}, [f"expected 0 <= {2**31} <= {2**31 - 1}: runAsUser"]),
        ({"runAsGroup": -10}, [f"expected 0 <= -10 <= {2**31 - 1}: runAsGroup"]),
        ({"fsGroup": -10}, [f"expected 0 <= -10 <= {2**31 - 1}: fsGroup"]),
        (
            {"supplementalGroups": [-10]},
            [f"expected 0 <= -10 <= {2**31 - 1}: supplementalGroups[0]"],
        ),
    ],
    ids=[
        "nil",
        "disallowed fields",
        "too large uid",
        "negative gid",
        "negative fsGroup",
        "negative supplementalGroups",
    ],
)
def test_pod_spec_security_context_validation(context: dict | None, expected: list[str]) -> None:
    # TestPodSpecSecurityContextValidation (the feature is on in every case).
    features = Features(pod_spec_security_context=ENABLED)
    found = [] if context is None else validate_pod_security_context(features, context, "")
    assert errors(found) == expected


PVC_DISABLED = [
    "Persistent volume claim support is disabled, but found persistent volume claim myclaim",
    "Persistent volume write support is disabled, but found persistent volume claim myclaim that is not read-only",
    "must not set the field(s): persistentVolumeClaim",
]


@pytest.mark.parametrize(
    ("volume", "flags", "expected"),
    [
        (
            {"name": "foo"},
            {},
            ["expected exactly one, got neither: secret, configMap, projected, emptyDir"],
        ),
        ({"name": "foo", "secret": {"secretName": "foo"}}, {}, []),
        (
            {"name": "foo", "emptyDir": {"medium": "Memory"}},
            {"pod_spec_volumes_empty_dir": ENABLED},
            [],
        ),
        (
            {"name": "foo", "hostPath": {"path": "/valid/path"}},
            {},
            [
                "HostPath volume support is disabled, but found HostPath volume foo",
                "must not set the field(s): hostPath",
            ],
        ),
        (
            {"name": "foo", "csi": {"driver": "foo"}},
            {},
            [
                "CSI volume support is disabled, but found CSI volume foo",
                "must not set the field(s): csi",
            ],
        ),
        (
            {"name": "foo", "persistentVolumeClaim": {"claimName": "myclaim", "readOnly": True}},
            {"pod_spec_persistent_volume_claim": ENABLED},
            [],
        ),
        ({"name": "foo", "persistentVolumeClaim": {"claimName": "myclaim"}}, {}, PVC_DISABLED),
        (
            {"name": "foo"},
            {"pod_spec_volumes_host_path": ENABLED},
            ["expected exactly one, got neither: secret, configMap, projected, emptyDir, hostPath"],
        ),
    ],
    ids=[
        "just name",
        "secret volume",
        "emptyDir volume",
        "hostPath volume with feature disabled",
        "CSI volume with feature disabled",
        "valid PVC with PVC feature enabled",
        "valid PVC with PVC feature disabled",
        "missing hostPath volume when required",
    ],
)
def test_volume_validation(volume: dict, flags: dict[str, str], expected: list[str]) -> None:
    # k8s_validation_test.go, TestVolumeValidation (validateVolume with default features).
    assert errors(validate_volume(default_features().with_(**flags), volume)) == expected


WRITE_DISABLED = (
    "Persistent volume write support is disabled, but found persistent volume claim myclaim "
    "that is not read-only"
)


@pytest.mark.parametrize(
    ("claim_read_only", "mount_read_only", "write", "expected"),
    [
        (False, True, DISABLED, [WRITE_DISABLED]),
        (False, False, DISABLED, [WRITE_DISABLED]),
        (
            True,
            False,
            DISABLED,
            ["volume is readOnly but volume mount is not: containers[0].volumeMounts[0].readOnly"],
        ),
        (True, True, DISABLED, []),
        (False, True, ENABLED, []),
        (False, False, ENABLED, []),
    ],
    ids=[
        "PVC not read-only, mount read-only, write disabled by default",
        "PVC not read-only, mount not read-only, write disabled by default",
        "PVC read-only, mount not read-only, write disabled by default",
        "PVC read-only, write disabled by default",
        "PVC not read-only, write enabled",
        "PVC read-only, write enabled",
    ],
)
def test_pvc_write_needs_the_feature_and_a_writable_claim(
    claim_read_only: bool, mount_read_only: bool, write: str, expected: list[str]
) -> None:
    # k8s_validation_test.go, TestPodSpecValidation, the six "PVC ..." cases
    # (lines 546-686): defaults plus withPodSpecPersistentVolumeClaimEnabled and,
    # for "write enabled", withPodSpecPersistentVolumeWriteEnabled. ("PVC
    # read-only, write enabled" is Knative's name; its claim is not read-only.)
    claim: dict = {"claimName": "myclaim"}
    if claim_read_only:
        claim["readOnly"] = True
    mount: dict = {"name": "foo", "mountPath": "/data"}
    if mount_read_only:
        mount["readOnly"] = True
    pod = {
        "containers": [{"image": "busybox", "volumeMounts": [mount]}],
        "volumes": [{"name": "foo", "persistentVolumeClaim": claim}],
    }
    features = default_features().with_(
        pod_spec_persistent_volume_claim=ENABLED, pod_spec_persistent_volume_write=write
    )
    assert errors(validate_pod_spec(features, pod)) == expected


def test_an_unknown_volume_mount_with_a_sub_path() -> None:
    # k8s_validation_test.go, TestInitContainerValidation "has unknown
    # volumeMounts" (line 2751): subPath itself is allowed (fieldmask.go,
    # VolumeMountMask keeps SubPath, line 358); the mount is refused for its
    # missing volume, readOnly and mountPath. Go's FieldError sorts its
    # messages, so the comparison is as a set.
    container = {"image": "foo", "volumeMounts": [{"name": "the-name", "subPath": "oops"}]}
    pod = {"containers": [{"image": "busybox"}], "initContainers": [{"name": "i", **container}]}
    features = default_features().with_(pod_spec_init_containers=ENABLED)
    assert sorted(errors(validate_pod_spec(features, pod))) == sorted([
        "volumeMount has no matching volume: containers[0].volumeMounts[0].name",
        "volume mount should be readOnly for this type of volume: containers[0].volumeMounts[0].readOnly",
        "missing field(s): containers[0].volumeMounts[0].mountPath",
    ])  # fmt: skip


def test_one_claim_read_only_at_one_mount_and_writable_at_a_sub_path() -> None:
    # Not a Knative test case: the shape kzero's llama.cpp predictors render
    # (prefixCache), judged by the same rules. One volume, so the claim carries
    # no readOnly; the model mount is read-only, the prefix mount writes only
    # its subPath.
    pod = {
        "containers": [{"image": "busybox", "volumeMounts": [
            {"name": "cache", "mountPath": "/var/cache/kzero", "readOnly": True},
            {"name": "cache", "mountPath": "/var/cache/kzero-prefixes", "subPath": "prefixes/m"},
        ]}],
        "volumes": [{"name": "cache", "persistentVolumeClaim": {"claimName": "myclaim"}}],
    }  # fmt: skip
    claim_only = default_features().with_(pod_spec_persistent_volume_claim=ENABLED)
    assert errors(validate_pod_spec(claim_only, pod)) == [WRITE_DISABLED]
    write = claim_only.with_(pod_spec_persistent_volume_write=ENABLED)
    assert validate_pod_spec(write, pod) == []
    # Keeping readOnly on the claim instead refuses the prefix mount.
    pod["volumes"][0]["persistentVolumeClaim"]["readOnly"] = True
    assert errors(validate_pod_spec(write, pod)) == [
        "volume is readOnly but volume mount is not: containers[0].volumeMounts[1].readOnly"
    ]


def test_pod_spec_refuses_an_unmounted_volume_and_a_writable_secret_mount() -> None:
    # TestPodSpecValidation "with volume name collision"-style cases: every
    # volume must be mounted, and a secret can only be mounted read-only.
    pod = {
        "containers": [{"image": "busybox", "volumeMounts": [{"name": "s", "mountPath": "/s"}]}],
        "volumes": [{"name": "s", "secret": {"secretName": "x"}},
                    {"name": "unused", "secret": {"secretName": "y"}}],
    }  # fmt: skip
    assert errors(validate_pod_spec(default_features(), pod)) == [
        'volume with name "unused" not mounted: volumes[1].name',
        "volume mount should be readOnly for this type of volume: containers[0].volumeMounts[0].readOnly",
    ]


def test_user_container_refuses_reserved_ports_names_and_env() -> None:
    # TestUserContainerValidation: reserved port 8012, reserved env PORT, name queue-proxy.
    container = {
        "name": "queue-proxy", "image": "busybox", "ports": [{"containerPort": 8012}],
        "env": [{"name": "PORT", "value": "1"}],
    }  # fmt: skip
    assert errors(validate_pod_spec(default_features(), {"containers": [container]})) == [
        '"queue-proxy" is a reserved container name: containers[0].name',
        '"PORT" is a reserved environment variable: containers[0].env[0].name',
        "invalid value: 8012 is a reserved port: containers[0].ports.containerPort",
    ]


def test_readiness_probe_port_must_match_the_container_port() -> None:
    # TestUserContainerValidation "probe port does not match container port"-style case.
    container = {"image": "busybox", "ports": [{"containerPort": 8080}],
                 "readinessProbe": {"httpGet": {"port": "other"}, "periodSeconds": 1}}  # fmt: skip
    assert errors(validate_pod_spec(default_features(), {"containers": [container]})) == [
        "invalid value: Probe port must match container port: containers[0].readinessProbe.httpGet.port"
    ]


# --- features.go --------------------------------------------------------------


def test_features_parse_case_insensitively_and_refuse_what_knative_ignores() -> None:
    parsed = parse_features({"kubernetes.podspec-volumes-emptydir": "disabled",
                             "secure-pod-defaults": "allowrootbounded"})  # fmt: skip
    assert parsed.pod_spec_volumes_empty_dir == DISABLED
    assert parsed.secure_pod_defaults == ALLOW_ROOT_BOUNDED
    # asSecurePodDefaultsFlag has no "Allowed"; Knative keeps the default, silently.
    assert (
        parse_features({"secure-pod-defaults": "Allowed"}, strict=False).secure_pod_defaults
        == DISABLED
    )
    with pytest.raises(FeatureValueIgnored, match="ignores the value"):
        parse_features({"secure-pod-defaults": "Allowed"})
    # The key the chart's patch once used: Knative reads kubernetes.podspec-volumes-emptydir.
    with pytest.raises(FeatureValueIgnored, match=r"kubernetes\.podspec-emptydir"):
        parse_features({"kubernetes.podspec-emptydir": "enabled"})


def test_default_features_match_features_go() -> None:
    defaults = default_features()
    assert defaults.multi_container == ENABLED
    assert defaults.pod_spec_volumes_empty_dir == ENABLED
    assert defaults.pod_spec_persistent_volume_claim == DISABLED
    assert defaults.pod_spec_persistent_volume_write == DISABLED  # features.go line 107
    assert defaults.pod_spec_security_context == DISABLED
    assert defaults.secure_pod_defaults == DISABLED


# --- annotation_validation_test.go -------------------------------------------

A = "autoscaling.knative.dev/"


@pytest.mark.parametrize(
    ("annotations", "expected"),
    [
        ({}, []),
        (
            {A + "class": "unsupported.knative.dev"},
            [f"invalid value: unsupported.knative.dev: {A}class"],
        ),
        ({A + "class": "some.other.domain"}, []),
        ({A + "min-scale": "-1"}, [f"expected 0 <= -1 <= 2147483647: {A}min-scale"]),
        (
            {A + "min-scale": "5", A + "max-scale": "2"},
            [f"max-scale=2 is less than min-scale=5: {A}max-scale, {A}min-scale"],
        ),
        ({A + "target": "0"}, [f"target 0 should be at least 0.01: {A}target"]),
        ({A + "target": "100}"}, [f"invalid value: 100}}: {A}target"]),
        ({A + "target-burst-capacity": "-11"}, [f"invalid value: -11: {A}target-burst-capacity"]),
        ({A + "target-burst-capacity": "-1"}, []),
        (
            {A + "target-utilization-percentage": "101"},
            [f"expected 1 <= 101 <= 100: {A}target-utilization-percentage"],
        ),
        ({A + "window": "1s"}, [f"expected 6s <= 1s <= 1h0m0s: {A}window"]),
        ({A + "window": "365h"}, [f"expected 6s <= 365h <= 1h0m0s: {A}window"]),
        (
            {A + "window": "1m9s82ms"},
            [f"must be specified with at most second precision: {A}window"],
        ),
        (
            {A + "initial-scale": "0"},
            [f"invalid value: 0: {A}initial-scale=0 not allowed by cluster"],
        ),
        (
            {A + "initial-scale": "-1"},
            [f"invalid value: -1: {A}initial-scale must be greater than 0"],
        ),
        ({A + "initial-scale": "2"}, []),
    ],
    ids=[
        "empty annotations",
        "invalid class",
        "non-knative.dev domain class",
        "minScale is -1",
        "minScale is 5, maxScale is 2",
        "target 0",
        "invalid target",
        "TBC negative",
        "TBC -1",
        "TU too big",
        "window too short",
        "window too long",
        "window too precise",
        "initial scale is zero but cluster doesn't allow",
        "initial scale is less than 0",
        "initial scale is greater than 0",
    ],
)
def test_annotation_validation(annotations: dict[str, str], expected: list[str]) -> None:
    # annotation_validation_test.go, TestValidateAnnotations (defaultConfig()).
    assert validate_annotations(parse_autoscaler({}), annotations) == expected
