"""ValidatePodSpec: the pod-spec checks of Knative's webhook.

Port of knative/serving pkg/apis/serving/k8s_validation.go at knative-v1.21.1,
errors only (warnDefaultContainerSecurityContext gives warnings, which do not
refuse anything, and is left out). Image references are only checked for
presence, not parsed with go-containerregistry.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass

from . import fieldmask as mask
from .features import DISABLED, ENABLED, Features

Obj = mask.Obj

MAX_ID = 2**31 - 1  # k8s_validation.go: minUserID, maxUserID = 0, math.MaxInt32
RESERVED_PATHS = {"/", "/dev", "/dev/log"}  # k8s_validation.go, reservedPaths
RESERVED_CONTAINER_NAMES = {"queue-proxy"}  # reservedContainerNames
RESERVED_ENV_VARS = {"PORT", "K_SERVICE", "K_CONFIGURATION", "K_REVISION"}  # reservedEnvVars
# reservedPorts: pkg/networking/constants.go (BackendHTTPPort 8012, BackendHTTP2Port
# 8013, QueueAdminPort 8022, AutoscalingQueueMetricsPort 9090, UserQueueMetricsPort
# 9091) and knative.dev/pkg observability/runtime ProfilingDefaultPort 8008.
RESERVED_PORTS = {8012, 8013, 8022, 9090, 9091, 8008}
VALID_PORT_NAMES = {"h2c", "http1", ""}  # validPortNames
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@dataclass(frozen=True)
class FieldError:
    message: str
    path: str = ""

    def __str__(self) -> str:
        return f"{self.message}: {self.path}" if self.path else self.message


def _at(path: str, field: str) -> str:
    return f"{path}.{field}" if path else field


def _disallowed(obj: Obj, masked: Obj, path: str) -> list[FieldError]:
    return [
        FieldError("must not set the field(s)", _at(path, field))
        for field in mask.disallowed(obj, masked)
    ]


def _out_of_bounds(value: int, field: str) -> FieldError:
    return FieldError(f"expected 0 <= {value} <= {MAX_ID}", field)


# --- Pod level -------------------------------------------------------------


def validate_pod_spec(features: Features, pod: Obj, path: str = "") -> list[FieldError]:
    """k8s_validation.go, ValidatePodSpec."""
    errors = _disallowed(pod, mask.pod_spec_mask(features, pod), path)
    if pod.get("securityContext") is not None:
        errors += validate_pod_security_context(
            features, pod["securityContext"], _at(path, "securityContext")
        )
    containers = pod.get("containers") or []
    init_containers = pod.get("initContainers") or []
    mounted = {m["name"] for c in init_containers + containers for m in c.get("volumeMounts") or []}
    volumes, volume_errors = validate_volumes(features, pod.get("volumes") or [], mounted, path)
    errors += volume_errors
    errors += _validate_init_containers(features, init_containers, containers, volumes, path)
    port, port_errors = _validate_containers_ports(containers, _at(path, "containers[*]"))
    errors += port_errors
    if not containers:
        errors.append(FieldError("missing field(s)", _at(path, "containers")))
    elif len(containers) == 1:
        errors += validate_user_container(
            features, containers[0], volumes, port, _at(path, "containers[0]")
        )
    else:
        errors += _validate_containers(features, containers, volumes, port, path)
    return errors


def validate_pod_security_context(features: Features, context: Obj, path: str) -> list[FieldError]:
    """k8s_validation.go, ValidatePodSecurityContext."""
    errors = _disallowed(context, mask.pod_security_context_mask(features, context), path)
    for field in ("runAsUser", "runAsGroup", "fsGroup"):
        value = context.get(field)
        if value is not None and not 0 <= value <= MAX_ID:
            errors.append(_out_of_bounds(value, _at(path, field)))
    for index, gid in enumerate(context.get("supplementalGroups") or []):
        if not 0 <= gid <= MAX_ID:
            errors.append(_out_of_bounds(gid, _at(path, f"supplementalGroups[{index}]")))
    return errors


# --- Volumes ---------------------------------------------------------------


def validate_volumes(
    features: Features, volumes: list[Obj], mounted: set[str], path: str
) -> tuple[dict[str, Obj], list[FieldError]]:
    """k8s_validation.go, ValidateVolumes: unique names, each one mounted, each one valid."""
    by_name: dict[str, Obj] = {}
    errors: list[FieldError] = []
    for index, volume in enumerate(volumes):
        where = _at(path, f"volumes[{index}]")
        name = volume.get("name", "")
        if name in by_name:
            errors.append(FieldError(f'duplicate volume name "{name}"', _at(where, "name")))
        if name not in mounted:
            errors.append(FieldError(f'volume with name "{name}" not mounted', _at(where, "name")))
        errors += validate_volume(features, volume, where)
        by_name[name] = volume
    return by_name, errors


def validate_volume(features: Features, volume: Obj, path: str = "") -> list[FieldError]:
    """k8s_validation.go, validateVolume and validatePersistentVolumeClaims.

    The per-type checks want the flag Enabled exactly, while VolumeSourceMask
    only wants it not Disabled: "Allowed" passes the mask but not these.
    """
    errors: list[FieldError] = []
    name = volume.get("name", "")
    claim = volume.get("persistentVolumeClaim")
    if claim is not None:
        if features.pod_spec_persistent_volume_claim != ENABLED:
            errors.append(FieldError(
                "Persistent volume claim support is disabled, but found persistent volume "
                f"claim {claim.get('claimName', '')}"
            ))  # fmt: skip
        if not claim.get("readOnly") and features.pod_spec_persistent_volume_write != ENABLED:
            errors.append(FieldError(
                "Persistent volume write support is disabled, but found persistent volume "
                f"claim {claim.get('claimName', '')} that is not read-only"
            ))  # fmt: skip
    for source, flag, label in (
        ("image", features.pod_spec_volumes_image, "Image"),
        ("emptyDir", features.pod_spec_volumes_empty_dir, "EmptyDir"),
        ("hostPath", features.pod_spec_volumes_host_path, "HostPath"),
        ("csi", features.pod_spec_volumes_csi, "CSI"),
    ):
        if volume.get(source) is not None and flag != ENABLED:
            errors.append(FieldError(
                f"{label} volume support is disabled, but found {label} volume {name}"
            ))  # fmt: skip
    errors += _disallowed(volume, mask.volume_mask(volume), path)
    if not name:
        # Go assigns here (errs = ...), dropping the errors gathered so far.
        errors = [FieldError("missing field(s)", _at(path, "name"))]
    elif not _DNS1123_LABEL.match(name) or len(name) > 63:
        errors = [FieldError(f"invalid value: {name}", _at(path, "name"))]
    source = {key: value for key, value in volume.items() if key != "name"}
    errors += _disallowed(source, mask.volume_source_mask(features, source), path)
    specified = []
    for source in ("secret", "configMap"):
        if volume.get(source) is not None:
            specified.append(source)
            for i, item in enumerate(volume[source].get("items") or []):
                errors += _validate_key_to_path(item, _at(path, f"{source}.items[{i}]"))
    if volume.get("projected") is not None:
        specified.append("projected")
        for i, projection in enumerate(volume["projected"].get("sources") or []):
            errors += _validate_projection(projection, _at(path, f"projected[{i}]"))
    if volume.get("emptyDir") is not None:
        specified.append("emptyDir")
        medium = volume["emptyDir"].get("medium", "")
        if medium not in ("", "Memory"):
            errors.append(FieldError(f"invalid value: {medium}", _at(path, "emptyDir.medium")))
    specified += [
        s for s in ("persistentVolumeClaim", "hostPath", "csi") if volume.get(s) is not None
    ]
    if volume.get("image") is not None:
        specified.append("image")
        if not volume["image"].get("reference"):
            errors.append(FieldError("missing field(s)", _at(path, "image.reference")))
    if not specified:
        one_of = ["secret", "configMap", "projected"]
        for source, flag in (
            ("emptyDir", features.pod_spec_volumes_empty_dir),
            ("persistentVolumeClaim", features.pod_spec_persistent_volume_claim),
            ("hostPath", features.pod_spec_volumes_host_path),
            ("csi", features.pod_spec_volumes_csi),
            ("image", features.pod_spec_volumes_image),
        ):
            if flag == ENABLED:
                one_of.append(source)
        errors.append(FieldError("expected exactly one, got neither", ", ".join(one_of)))
    elif len(specified) > 1:
        errors.append(FieldError("expected exactly one, got both", ", ".join(specified)))
    return errors


def _validate_key_to_path(item: Obj, path: str) -> list[FieldError]:
    """k8s_validation.go, validateKeyToPath."""
    errors = _disallowed(item, mask.key_to_path_mask(item), path)
    errors += [
        FieldError("missing field(s)", _at(path, f)) for f in ("key", "path") if not item.get(f)
    ]
    return errors


def _validate_projection(projection: Obj, path: str) -> list[FieldError]:
    """k8s_validation.go, validateProjectedVolumeSource and the projection validators."""
    errors = _disallowed(projection, mask.volume_projection_mask(projection), path)
    specified = []
    for source in ("secret", "configMap"):
        if (ref := projection.get(source)) is not None:
            specified.append(source)
            where = _at(path, source)
            errors += _disallowed(ref, mask.object_projection_mask(ref), where)
            if not ref.get("name"):
                errors.append(FieldError("missing field(s)", _at(where, "name")))
            for i, item in enumerate(ref.get("items") or []):
                errors += _validate_key_to_path(item, _at(where, f"items[{i}]"))
    if (token := projection.get("serviceAccountToken")) is not None:
        specified.append("serviceAccountToken")
        where = _at(path, "serviceAccountToken")
        errors += _disallowed(token, mask.service_account_token_projection_mask(token), where)
        if not token.get("path"):
            errors.append(FieldError("missing field(s)", _at(where, "path")))
    if (downward := projection.get("downwardAPI")) is not None:
        specified.append("downwardAPI")
        where = _at(path, "downwardAPI")
        errors += _disallowed(downward, mask.downward_api_projection_mask(downward), where)
        for i, item in enumerate(downward.get("items") or []):
            errors += _disallowed(
                item, mask.downward_api_volume_file_mask(item), _at(where, f"items[{i}]")
            )
    if not specified:
        errors.append(FieldError("expected exactly one, got neither", path))
    elif len(specified) > 1:
        errors.append(FieldError("expected exactly one, got both", ", ".join(specified)))
    return errors


# --- Containers ------------------------------------------------------------


def _validate_init_containers(
    features: Features, init: list[Obj], others: list[Obj], volumes: dict[str, Obj], path: str
) -> list[FieldError]:
    """k8s_validation.go, validateInitContainers and validateInitContainer."""
    if not init:
        return []
    if features.pod_spec_init_containers != ENABLED:
        return [
            FieldError(
                f"pod spec support for init-containers is off, but found {len(init)} init containers"
            )
        ]
    errors = []
    names = {c.get("name") for c in others}
    for i, container in enumerate(init):
        where = _at(path, f"containers[{i}]")
        if container.get("name") in names:
            errors.append(
                FieldError(
                    f'duplicate container name "{container.get("name")}"', _at(where, "name")
                )
            )
        for field in ("livenessProbe", "readinessProbe", "startupProbe", "lifecycle"):
            if container.get(field) is not None:
                errors.append(
                    FieldError("field not allowed in an init container", _at(where, field))
                )
        errors += _validate_container(features, container, volumes, where, init=True)
    return errors


def _validate_containers(
    features: Features, containers: list[Obj], volumes: dict[str, Obj], port: Obj, path: str
) -> list[FieldError]:
    """k8s_validation.go, validateContainers (more than one container)."""
    if features.multi_container != ENABLED:
        return [FieldError(f"multi-container is off, but found {len(containers)} containers")]
    errors: list[FieldError] = []
    seen: set[str] = set()
    for i, container in enumerate(containers):
        where = _at(path, f"containers[{i}]")
        if container.get("name") in seen:
            errors.append(
                FieldError(
                    f'duplicate container name "{container.get("name")}"', _at(where, "name")
                )
            )
        seen.add(container.get("name", ""))
        if container.get("ports"):
            errors += validate_user_container(features, container, volumes, port, where)
        else:
            errors += _validate_sidecar_container(features, container, volumes, where)
    return errors


def _validate_containers_ports(containers: list[Obj], path: str) -> tuple[Obj, list[FieldError]]:
    """k8s_validation.go, validateContainersPorts: one serving port across all containers."""
    count, port = 0, {}
    for container in containers:
        if ports := container.get("ports") or []:
            count += len(ports)
            port = dict(ports[0])
    port["name"] = port.get("name") or "http"
    port["containerPort"] = port.get("containerPort") or 8080
    if count == 0 and len(containers) > 1:
        return port, [FieldError("missing field(s)", _at(path, "ports"))]
    if count > 1:
        return port, [FieldError("more than one container port is set", _at(path, "ports"))]
    return port, []


def validate_user_container(
    features: Features, container: Obj, volumes: dict[str, Obj], port: Obj, path: str = ""
) -> list[FieldError]:
    """k8s_validation.go, ValidateUserContainer."""
    errors = _validate_probe(container.get("livenessProbe"), port, True, _at(path, "livenessProbe"))
    errors += _validate_readiness_probe(
        container.get("readinessProbe"), port, _at(path, "readinessProbe")
    )
    return errors + _validate_container(features, container, volumes, path)


def _validate_sidecar_container(
    features: Features, container: Obj, volumes: dict[str, Obj], path: str
) -> list[FieldError]:
    """k8s_validation.go, validateSidecarContainer: probes only with multi-container-probing."""
    errors: list[FieldError] = []
    for field in ("livenessProbe", "readinessProbe"):
        probe = container.get(field)
        if probe is None:
            continue
        if features.multi_container_probing != ENABLED:
            errors += _disallowed(probe, {}, _at(path, field))
        elif field == "livenessProbe":
            errors += _validate_probe(probe, None, False, _at(path, field))
        else:
            errors += _validate_readiness_probe(probe, None, _at(path, field), user=False)
    return errors + _validate_container(features, container, volumes, path)


def _validate_container(
    features: Features, container: Obj, volumes: dict[str, Obj], path: str, init: bool = False
) -> list[FieldError]:
    """k8s_validation.go, validate: one container's fields."""
    if not container:
        return [FieldError("missing field(s)", path)]
    errors = _disallowed(container, mask.container_mask(container), path)
    if container.get("name") in RESERVED_CONTAINER_NAMES:
        errors.append(
            FieldError(f'"{container["name"]}" is a reserved container name', _at(path, "name"))
        )
    reserved_env = RESERVED_ENV_VARS - {"PORT"} if init else RESERVED_ENV_VARS
    for i, env in enumerate(container.get("env") or []):
        where = _at(path, f"env[{i}]")
        errors += _disallowed(env, mask.env_var_mask(env), where)
        if not env.get("name"):
            errors.append(FieldError("missing field(s)", _at(where, "name")))
        elif env["name"] in reserved_env:
            errors.append(
                FieldError(
                    f'"{env["name"]}" is a reserved environment variable', _at(where, "name")
                )
            )
        if (source := env.get("valueFrom")) is not None:
            field_ref = features.pod_spec_field_ref != DISABLED
            errors += _disallowed(
                source, mask.env_var_source_mask(source, field_ref), _at(where, "valueFrom")
            )
    for i, source in enumerate(container.get("envFrom") or []):
        where = _at(path, f"envFrom[{i}]")
        errors += _disallowed(source, mask.env_from_source_mask(source), where)
        refs = [r for r in ("configMapRef", "secretRef") if source.get(r) is not None]
        for ref in refs:
            errors += _disallowed(
                source[ref], mask.env_source_ref_mask(source[ref]), _at(where, ref)
            )
        if len(refs) != 1:
            errors.append(FieldError("expected exactly one", _at(where, "configMapRef, secretRef")))
    if not container.get("image"):
        errors.append(FieldError("missing field(s)", _at(path, "image")))
    ports = container.get("ports") or []
    if init:
        for port in ports:
            errors += _validate_port_basic(port, _at(path, "ports"))
    elif ports:
        user_port = ports[0]
        errors += _validate_port_basic(user_port, _at(path, "ports"))
        if user_port.get("protocol", "") not in ("", "TCP"):
            errors.append(
                FieldError(f"invalid value: {user_port['protocol']}", _at(path, "ports.protocol"))
            )
        if user_port.get("name", "") not in VALID_PORT_NAMES:
            errors.append(
                FieldError(f"Port name {user_port['name']} is not allowed", _at(path, "ports"))
            )
    if (resources := container.get("resources")) is not None:
        errors += _disallowed(
            resources, mask.resource_requirements_mask(resources), _at(path, "resources")
        )
    if (context := container.get("securityContext")) is not None:
        errors += _validate_security_context(features, context, _at(path, "securityContext"))
    if container.get("terminationMessagePolicy", "") not in ("", "File", "FallbackToLogsOnError"):
        errors.append(FieldError("invalid value", _at(path, "terminationMessagePolicy")))
    errors += _validate_volume_mounts(
        features, container.get("volumeMounts") or [], volumes, _at(path, "volumeMounts")
    )
    return errors


def _validate_port_basic(port: Obj, path: str) -> list[FieldError]:
    """k8s_validation.go, validateContainerPortBasic."""
    errors = _disallowed(port, mask.container_port_mask(port), path)
    number = port.get("containerPort", 0)
    if number in RESERVED_PORTS:
        errors.append(
            FieldError(f"invalid value: {number} is a reserved port", _at(path, "containerPort"))
        )
    if not 0 <= number <= 65535:
        errors.append(FieldError(f"expected 0 <= {number} <= 65535", _at(path, "containerPort")))
    return errors


def _validate_security_context(features: Features, context: Obj, path: str) -> list[FieldError]:
    """k8s_validation.go, validateSecurityContext and validateCapabilities."""
    errors = _disallowed(context, mask.security_context_mask(context), path)
    if (capabilities := context.get("capabilities")) is not None:
        masked = mask.capabilities_mask(features, capabilities)
        errors += _disallowed(capabilities, masked, _at(path, "capabilities"))
    for field in ("runAsUser", "runAsGroup"):
        value = context.get(field)
        if value is not None and not 0 <= value <= MAX_ID:
            errors.append(_out_of_bounds(value, _at(path, field)))
    return errors


def _validate_volume_mounts(
    features: Features, mounts: list[Obj], volumes: dict[str, Obj], path: str
) -> list[FieldError]:
    """k8s_validation.go, validateVolumeMounts."""
    errors: list[FieldError] = []
    seen_paths: set[str] = set()
    for i, mount in enumerate(mounts):
        where = f"{path}[{i}]"
        errors += _disallowed(mount, mask.volume_mount_mask(features, mount), where)
        volume = volumes.get(mount.get("name", ""))
        if volume is None:
            errors.append(FieldError("volumeMount has no matching volume", _at(where, "name")))
            volume = {}
        mount_path = mount.get("mountPath", "")
        clean = posixpath.normpath(mount_path) if mount_path else ""
        if not mount_path:
            errors.append(FieldError("missing field(s)", _at(where, "mountPath")))
        elif clean in RESERVED_PATHS:
            errors.append(
                FieldError(f'mountPath "{clean}" is a reserved path', _at(where, "mountPath"))
            )
        elif not posixpath.isabs(mount_path):
            errors.append(FieldError(f"invalid value: {mount_path}", _at(where, "mountPath")))
        elif clean in seen_paths:
            errors.append(
                FieldError(f'invalid value: "{mount_path}" must be unique', _at(where, "mountPath"))
            )
        seen_paths.add(clean)
        # Mounts of anything but emptyDir and PVC volumes must be read-only.
        writable_kind = (
            volume.get("emptyDir") is not None or volume.get("persistentVolumeClaim") is not None
        )
        if not writable_kind and not mount.get("readOnly"):
            errors.append(
                FieldError(
                    "volume mount should be readOnly for this type of volume",
                    _at(where, "readOnly"),
                )
            )
        if (propagation := mount.get("mountPropagation")) is not None:
            if features.pod_spec_volumes_mount_propagation != ENABLED:
                errors.append(FieldError(
                    "Volume Mount Propagation support is disabled, but found volume mount "
                    f"{mount.get('name')} with mount propagation"
                ))  # fmt: skip
            if propagation not in ("None", "HostToContainer"):
                errors.append(
                    FieldError(
                        "mount propagation should be set to None or HostToContainer",
                        _at(where, "mountPropagation"),
                    )
                )
        claim = volume.get("persistentVolumeClaim")
        if claim is not None and claim.get("readOnly") and not mount.get("readOnly"):
            errors.append(
                FieldError("volume is readOnly but volume mount is not", _at(where, "readOnly"))
            )
    return errors


# --- Probes ----------------------------------------------------------------


def _validate_readiness_probe(
    probe: Obj | None, port: Obj | None, path: str, user: bool = True
) -> list[FieldError]:
    """k8s_validation.go, validateReadinessProbe: periodSeconds 0 is Knative's own fast probe."""
    if probe is None:
        return []
    errors = _validate_probe(probe, port, user, path)
    period = probe.get("periodSeconds", 0)
    if period < 0:
        errors.append(FieldError(f"expected 0 <= {period} <= {MAX_ID}", _at(path, "periodSeconds")))
    if probe.get("initialDelaySeconds", 0) < 0:
        errors.append(FieldError("out of bounds", _at(path, "initialDelaySeconds")))
    # Knative's defaulting runs first (pkg/apis/serving/v1/revision_defaults.go,
    # applyReadinessProbeDefaults): successThreshold 1 and, when a period is
    # set, failureThreshold 3 and timeoutSeconds 1.
    if probe.get("successThreshold", 1) < 1:
        errors.append(FieldError("out of bounds", _at(path, "successThreshold")))
    if period == 0:
        for field in ("failureThreshold", "timeoutSeconds"):
            if probe.get(field, 0) != 0:
                errors.append(
                    FieldError(
                        f"{field} is disallowed when periodSeconds is zero", _at(path, field)
                    )
                )
    else:
        for field, default in (("timeoutSeconds", 1), ("failureThreshold", 3)):
            if probe.get(field, default) < 1:
                errors.append(FieldError("out of bounds", _at(path, field)))
    return errors


def _validate_probe(probe: Obj | None, port: Obj | None, user: bool, path: str) -> list[FieldError]:
    """k8s_validation.go, validateProbe: one handler; a user container's probe port names its port."""
    if probe is None:
        return []
    errors = _disallowed(probe, mask.probe_mask(probe), path)
    handlers = []
    for handler, action_mask in (
        ("httpGet", mask.http_get_action_mask),
        ("tcpSocket", mask.tcp_socket_action_mask),
        ("exec", mask.exec_action_mask),
        ("grpc", mask.grpc_action_mask),
    ):
        action = probe.get(handler)
        if action is None:
            continue
        handlers.append(handler)
        errors += _disallowed(action, action_mask(action), _at(path, handler))
        if handler in ("httpGet", "tcpSocket"):
            probe_port = action.get("port")
            if user and port is not None:
                if isinstance(probe_port, str) and probe_port and probe_port != port["name"]:
                    errors.append(
                        FieldError(
                            "invalid value: Probe port must match container port",
                            _at(path, f"{handler}.port"),
                        )
                    )
            elif probe_port in (None, 0, ""):
                errors.append(
                    FieldError(
                        "invalid value: Probe port must be specified", _at(path, f"{handler}.port")
                    )
                )
    if not handlers:
        errors.append(FieldError("expected exactly one, got neither", path))
    elif len(handlers) > 1:
        errors.append(FieldError("expected exactly one, got both", ", ".join(handlers)))
    return errors
