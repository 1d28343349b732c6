"""The ConfigMaps kzero patches, as Knative's controllers and ConfigMap webhook read them.

Knative's ConfigMap validation webhook (failurePolicy Fail) runs the same
parser as the controllers on every update and refuses data it cannot parse.
Port, at knative-v1.21.1, of:

- config-autoscaler: pkg/autoscaler/config/config.go, NewConfigFromMap + validate
- config-deployment: pkg/deployment/config.go, NewConfigFromMap
- config-defaults:   pkg/apis/config/defaults.go, NewDefaultsConfigFromMap
- config-features:   features.py (NewFeaturesConfigFromMap)

Only the keys and checks listed here are ported; a key outside them is refused
by `check`, so nothing kzero sets escapes the port. knative.dev/pkg/configmap's
As* parsers are Go's strconv and time.ParseDuration.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from .features import FeatureValueIgnored, parse_features


class ConfigRefused(ValueError):
    """What Knative's ConfigMap webhook answers for data its parser refuses."""


# --- knative.dev/pkg/configmap As* parsers -----------------------------------

_GO_BOOLS = {"1": True, "t": True, "T": True, "TRUE": True, "true": True, "True": True,
             "0": False, "f": False, "F": False, "FALSE": False, "false": False, "False": False}  # fmt: skip
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def as_bool(key: str, raw: str) -> bool:
    """strconv.ParseBool."""
    if raw not in _GO_BOOLS:
        raise ConfigRefused(f"failed to parse {key}: invalid syntax {raw!r}")
    return _GO_BOOLS[raw]


def as_float(key: str, raw: str) -> float:
    """strconv.ParseFloat(raw, 64)."""
    try:
        return float(raw)
    except ValueError as exc:
        raise ConfigRefused(f"failed to parse {key}: {raw!r}") from exc


def as_int(key: str, raw: str) -> int:
    """strconv.ParseInt (AsInt32, AsInt64)."""
    if not re.fullmatch(r"[+-]?\d+", raw):
        raise ConfigRefused(f"failed to parse {key}: {raw!r}")
    return int(raw)


def as_duration(key: str, raw: str) -> float:
    """time.ParseDuration, in seconds: "0", or signed number+unit parts ("1m30s")."""
    text = raw[1:] if raw[:1] in "+-" else raw
    if text == "0":
        return 0.0
    if not text or _DURATION_PART.sub("", text):
        raise ConfigRefused(f"failed to parse {key}: time: invalid duration {raw!r}")
    seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))
    return -seconds if raw.startswith("-") else seconds


def as_string(key: str, raw: str) -> str:
    return raw


# --- config-autoscaler -------------------------------------------------------

# config.go, NewConfigFromMap: key -> parser; defaultConfig for the defaults.
AUTOSCALER_KEYS: dict[str, Callable[[str, str], object]] = {
    "pod-autoscaler-class": as_string,
    "enable-scale-to-zero": as_bool,
    "allow-zero-initial-scale": as_bool,
    "max-scale-up-rate": as_float,
    "max-scale-down-rate": as_float,
    "container-concurrency-target-percentage": as_float,
    "container-concurrency-target-default": as_float,
    "requests-per-second-target-default": as_float,
    "target-burst-capacity": as_float,
    "panic-window-percentage": as_float,
    "activator-capacity": as_float,
    "panic-threshold-percentage": as_float,
    "initial-scale": as_int,
    "min-scale": as_int,
    "max-scale": as_int,
    "max-scale-limit": as_int,
    "stable-window": as_duration,
    "scale-down-delay": as_duration,
    "scale-to-zero-grace-period": as_duration,
    "scale-to-zero-pod-retention-period": as_duration,
}
AUTOSCALER_DEFAULTS: dict[str, object] = {
    "enable-scale-to-zero": True, "container-concurrency-target-percentage": 0.7,
    "container-concurrency-target-default": 100.0, "requests-per-second-target-default": 200.0,
    "max-scale-up-rate": 1000.0, "max-scale-down-rate": 2.0, "target-burst-capacity": 211.0,
    "panic-window-percentage": 10.0, "activator-capacity": 100.0,
    "panic-threshold-percentage": 200.0, "stable-window": 60.0,
    "scale-to-zero-grace-period": 30.0, "scale-to-zero-pod-retention-period": 0.0,
    "scale-down-delay": 0.0, "pod-autoscaler-class": "kpa.autoscaling.knative.dev",
    "allow-zero-initial-scale": False, "initial-scale": 1, "min-scale": 0, "max-scale": 0,
    "max-scale-limit": 0,
}  # fmt: skip
# pkg/apis/autoscaling/register.go: TargetMin, WindowMin, WindowMax, PanicWindowPercentageMin/Max.
TARGET_MIN, WINDOW_MIN, WINDOW_MAX = 0.01, 6.0, 3600.0
PANIC_WINDOW_PERCENTAGE_MIN, PANIC_WINDOW_PERCENTAGE_MAX = 1.0, 100.0


def parse_autoscaler(data: dict[str, str]) -> dict[str, object]:
    """pkg/autoscaler/config/config.go, NewConfigFromMap and validate."""
    c = dict(AUTOSCALER_DEFAULTS)
    c.update(
        {key: AUTOSCALER_KEYS[key](key, raw) for key, raw in data.items() if key in AUTOSCALER_KEYS}
    )
    # "% => fractions: for legacy reasons we allow values in the (0, 1] interval".
    target_fraction = float(c["container-concurrency-target-percentage"])  # type: ignore[arg-type]
    if target_fraction > 1.0:
        target_fraction /= 100.0

    def refuse(message: str) -> None:
        raise ConfigRefused(message)

    if c["scale-to-zero-grace-period"] <= 0:  # type: ignore[operator]
        refuse("scale-to-zero-grace-period must be positive")
    for key in ("scale-down-delay", "stable-window"):
        if float(c[key]) != round(float(c[key])):  # type: ignore[arg-type]
            refuse(f"{key} must be specified with at most second precision")
    if c["scale-down-delay"] < 0:  # type: ignore[operator]
        refuse("scale-down-delay cannot be negative")
    if c["scale-to-zero-pod-retention-period"] < 0:  # type: ignore[operator]
        refuse("scale-to-zero-pod-retention-period cannot be negative")
    burst = c["target-burst-capacity"]
    if burst < 0 and burst != -1:  # type: ignore[operator]
        refuse("target-burst-capacity must be either non-negative or -1 (for unlimited)")
    if not 0 < target_fraction <= 1:
        refuse("container-concurrency-target-percentage is outside of valid range of (0, 100]")
    if target_fraction * c["container-concurrency-target-default"] < TARGET_MIN:  # type: ignore[operator]
        refuse("container-concurrency-target-percentage and -default yield a target below 0.01")
    if c["requests-per-second-target-default"] < TARGET_MIN:  # type: ignore[operator]
        refuse("requests-per-second-target-default must be at least 0.01")
    if c["activator-capacity"] < 1:  # type: ignore[operator]
        refuse("activator-capacity must be at least 1")
    for key in ("max-scale-up-rate", "max-scale-down-rate"):
        if c[key] <= 1.0:  # type: ignore[operator]
            refuse(f"{key} must be greater than 1.0")
    if not WINDOW_MIN <= c["stable-window"] <= WINDOW_MAX:  # type: ignore[operator]
        refuse("stable-window must be in [6s; 1h0m0s] range")
    if (
        not PANIC_WINDOW_PERCENTAGE_MIN
        <= c["panic-window-percentage"]
        <= PANIC_WINDOW_PERCENTAGE_MAX
    ):  # type: ignore[operator]
        refuse("panic-window-percentage must be in [1, 100] interval")
    initial = c["initial-scale"]
    if initial < 0 or (initial == 0 and not c["allow-zero-initial-scale"]):  # type: ignore[operator]
        refuse(
            "initial-scale must be at least 0 (or at least 1 when allow-zero-initial-scale is false)"
        )
    if c["min-scale"] < 0:  # type: ignore[operator]
        refuse("min-scale must be at least 0")
    limit, max_scale = int(c["max-scale-limit"]), int(c["max-scale"])  # type: ignore[call-overload]
    if max_scale < (1 if limit > 0 else 0) or (limit > 0 and max_scale > limit):
        refuse("max-scale must be in [min, max-scale-limit] range")
    if limit < 0:
        refuse("max-scale-limit must be at least 0")
    if c["min-scale"] > max_scale > 0:  # type: ignore[operator]
        refuse("min-scale must be less than max-scale")
    return c


# --- config-deployment -------------------------------------------------------

# pkg/deployment/config.go, NewConfigFromMap (the current keys; the camelCase
# legacy keys are left out, kzero never writes them).
DEPLOYMENT_KEYS: dict[str, Callable[[str, str], object]] = {
    "queue-sidecar-image": as_string,
    "progress-deadline": as_duration,
    "digest-resolution-timeout": as_duration,
    "registries-skipping-tag-resolving": as_string,
    "queue-sidecar-cpu-request": as_string,
    "queue-sidecar-memory-request": as_string,
    "queue-sidecar-ephemeral-storage-request": as_string,
    "queue-sidecar-cpu-limit": as_string,
    "queue-sidecar-memory-limit": as_string,
    "queue-sidecar-ephemeral-storage-limit": as_string,
    "queue-sidecar-token-audiences": as_string,
    "queue-sidecar-rootca": as_string,
    "default-affinity-type": as_string,
    "runtime-class-name": as_string,
    "pod-is-always-schedulable": as_bool,
}
# config/core/configmaps/deployment.yaml at the tag: the data serving-core.yaml
# ships (ko:// is replaced by the release's image digest).
SHIPPED_DEPLOYMENT_DATA = {"queue-sidecar-image": "ko://knative.dev/serving/cmd/queue"}


def parse_deployment(data: dict[str, str]) -> dict[str, object]:
    """pkg/deployment/config.go, NewConfigFromMap: the checks after parsing."""
    c: dict[str, object] = {"progress-deadline": 600.0, "digest-resolution-timeout": 10.0,
                            "default-affinity-type": "prefer-spread-revision-over-nodes"}  # fmt: skip
    c.update(
        {key: DEPLOYMENT_KEYS[key](key, raw) for key, raw in data.items() if key in DEPLOYMENT_KEYS}
    )
    if not c.get("queue-sidecar-image"):
        raise ConfigRefused("queue-sidecar-image cannot be empty or unset")
    deadline = float(c["progress-deadline"])  # type: ignore[arg-type]
    if deadline <= 0:
        raise ConfigRefused("progress-deadline cannot be a non-positive duration")
    if deadline != int(deadline):
        raise ConfigRefused("progress-deadline must be rounded to a whole second")
    if float(c["digest-resolution-timeout"]) <= 0:  # type: ignore[arg-type]
        raise ConfigRefused("digest-resolution-timeout cannot be a non-positive duration")
    if c["default-affinity-type"] not in ("none", "prefer-spread-revision-over-nodes"):
        raise ConfigRefused(
            f"unsupported default-affinity-type value: {c['default-affinity-type']!r}"
        )
    return c


# --- config-defaults ---------------------------------------------------------

# pkg/apis/config/defaults.go, NewDefaultsConfigFromMap (the keys kzero may
# set; the templates and quantities are left out).
DEFAULTS_KEYS: dict[str, Callable[[str, str], object]] = {
    "allow-container-concurrency-zero": as_bool,
    "revision-timeout-seconds": as_int,
    "max-revision-timeout-seconds": as_int,
    "revision-idle-timeout-seconds": as_int,
    "revision-response-start-timeout-seconds": as_int,
    "container-concurrency": as_int,
    "container-concurrency-max-limit": as_int,
}


def parse_defaults(data: dict[str, str]) -> dict[str, object]:
    """pkg/apis/config/defaults.go, NewDefaultsConfigFromMap (defaultDefaultsConfig:
    300 s revision timeout, 600 s ceiling, concurrency 0 of at most 1000)."""
    c: dict[str, int] = {"revision-timeout-seconds": 300, "max-revision-timeout-seconds": 600,
                         "revision-idle-timeout-seconds": 0, "container-concurrency": 0,
                         "container-concurrency-max-limit": 1000}  # fmt: skip
    for key, raw in data.items():
        if key in DEFAULTS_KEYS and key != "allow-container-concurrency-zero":
            c[key] = as_int(key, raw)
        elif key in DEFAULTS_KEYS:
            as_bool(key, raw)
    # "We default this to what the user has specified".
    c.setdefault("revision-response-start-timeout-seconds", c["revision-timeout-seconds"])
    timeout = c["revision-timeout-seconds"]
    if timeout > c["max-revision-timeout-seconds"]:
        raise ConfigRefused(
            "revision-timeout-seconds cannot be greater than max-revision-timeout-seconds"
        )
    if 0 < c["revision-response-start-timeout-seconds"] > timeout:
        raise ConfigRefused(
            "revision-response-start-timeout-seconds cannot be greater than revision-timeout-seconds"
        )
    if 0 < c["revision-idle-timeout-seconds"] > timeout:
        raise ConfigRefused(
            "revision-idle-timeout-seconds cannot be greater than revision-timeout-seconds"
        )
    if c["container-concurrency-max-limit"] < 1:
        raise ConfigRefused("container-concurrency-max-limit must be at least 1")
    if not 0 <= c["container-concurrency"] <= c["container-concurrency-max-limit"]:
        raise ConfigRefused("container-concurrency out of bounds")
    return c


# --- all of them ---------------------------------------------------------------

KNOWN_KEYS: dict[str, set[str]] = {
    "config-autoscaler": set(AUTOSCALER_KEYS),
    "config-deployment": set(DEPLOYMENT_KEYS),
    "config-defaults": set(DEFAULTS_KEYS),
}
PARSERS: dict[str, Callable[[dict[str, str]], object]] = {
    "config-autoscaler": parse_autoscaler,
    "config-deployment": parse_deployment,
    "config-defaults": parse_defaults,
    "config-features": parse_features,
}


def check(name: str, data: dict[str, str]) -> None:
    """Raise ConfigRefused as Knative would, or for a key/value Knative would ignore."""
    if name not in PARSERS:
        raise ConfigRefused(f"{name}: not a ConfigMap this port knows")
    if not all(isinstance(value, str) for value in data.values()):
        raise ConfigRefused(f"{name}: ConfigMap data values must be strings")
    if name != "config-features":
        unknown = set(data) - KNOWN_KEYS[name]
        if unknown:
            raise ConfigRefused(
                f"{name}: keys Knative does not read (ignored silently): {sorted(unknown)}"
            )
    try:
        PARSERS[name](data)
    except FeatureValueIgnored as exc:
        raise ConfigRefused(f"{name}: {exc}") from exc


def merge_patch(live: dict[str, str], patch: dict[str, str | None]) -> dict[str, str]:
    """`kubectl patch --type merge` on a ConfigMap's data (RFC 7386: null deletes)."""
    merged = dict(live)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def apply_whole(
    live: dict[str, str], last_applied: dict[str, str], applied: dict[str, str]
) -> dict[str, str]:
    """`kubectl apply -f` of a whole ConfigMap: its three-way merge deletes every
    key of the last-applied configuration (serving-core.yaml's, for Knative's
    ConfigMaps) that the new file lacks, and keeps keys others added."""
    added_by_others = {key: value for key, value in live.items() if key not in last_applied}
    return {**added_by_others, **applied}
