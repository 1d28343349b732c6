"""The autoscaling annotations Knative's webhook accepts on a revision.

Port of knative/serving pkg/apis/autoscaling/annotation_validation.go,
ValidateAnnotations, at knative-v1.21.1, for the current key of each
annotation (the legacy aliases of its kmap.KeyPriority lists are left out; the
chart never writes them) and without the metric-aggregation-algorithm and
activation-scale checks (the chart sets neither). Bounds are the constants of
pkg/apis/autoscaling/register.go. Each error reads as Knative's FieldError does.
"""

from __future__ import annotations

from .configmaps import ConfigRefused, as_duration

PREFIX = "autoscaling.knative.dev/"
KPA = "kpa.autoscaling.knative.dev"
HPA = "hpa.autoscaling.knative.dev"
MAX_INT32 = 2**31 - 1
TARGET_MIN = 0.01
WINDOW_MIN_S, WINDOW_MAX_S = 6, 3600
PANIC_WINDOW_PERCENTAGE = (1.0, 100.0)
PANIC_THRESHOLD_PERCENTAGE = (110.0, 1000.0)


def _float(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def _duration(value: str) -> float | None:
    try:
        return as_duration("", value)
    except ConfigRefused:
        return None


def _int_ge0(annotations: dict[str, str], key: str) -> tuple[int, list[str]]:
    """getIntGE0."""
    if key not in annotations:
        return 0, []
    raw = annotations[key]
    try:
        value = int(raw, 10)
    except ValueError:
        return 0, [f"invalid value: {raw}: {key}"]
    if not 0 <= value <= MAX_INT32:
        return 0, [f"expected 0 <= {raw} <= {MAX_INT32}: {key}"]
    return value, []


def validate_annotations(config: dict[str, object], annotations: dict[str, str]) -> list[str]:
    """annotation_validation.go, ValidateAnnotations, under a parsed config-autoscaler."""
    a = annotations
    errors: list[str] = []
    # validateClass
    cls = a.get(PREFIX + "class")
    if cls is not None and cls.endswith(".knative.dev") and cls not in (KPA, HPA):
        errors.append(f"invalid value: {cls}: {PREFIX}class")
    # validateMinMaxScale (and validateMaxScaleWithinLimit)
    low, found = _int_ge0(a, PREFIX + "min-scale")
    errors += found
    high, found = _int_ge0(a, PREFIX + "max-scale")
    errors += found
    if high != 0 and high < low:
        errors.append(
            f"max-scale={high} is less than min-scale={low}: {PREFIX}max-scale, {PREFIX}min-scale"
        )
    limit = int(config["max-scale-limit"])  # type: ignore[call-overload]
    if PREFIX + "max-scale" in a and limit:
        if high > limit:
            errors.append(f"expected 1 <= {high} <= {limit}: {PREFIX}max-scale")
        if high == 0:
            errors.append(f"max-scale=0 (unlimited), must be less than {limit}: {PREFIX}max-scale")
    # validateFloats
    for name, (lowest, highest) in (
        ("panic-window-percentage", PANIC_WINDOW_PERCENTAGE),
        ("panic-threshold-percentage", PANIC_THRESHOLD_PERCENTAGE),
        ("target-utilization-percentage", (1, 100)),
    ):
        if (raw := a.get(PREFIX + name)) is not None:
            value = _float(raw)
            if value is None:
                errors.append(f"invalid value: {raw}: {PREFIX}{name}")
            elif not lowest <= value <= highest:
                errors.append(f"expected {lowest:g} <= {raw} <= {highest:g}: {PREFIX}{name}")
    if (raw := a.get(PREFIX + "target")) is not None:
        value = _float(raw)
        if value is None:
            errors.append(f"invalid value: {raw}: {PREFIX}target")
        elif value < TARGET_MIN:
            errors.append(f"target {raw} should be at least {TARGET_MIN:g}: {PREFIX}target")
    if (raw := a.get(PREFIX + "target-burst-capacity")) is not None:
        value = _float(raw)
        if value is None or (value < 0 and value != -1):
            errors.append(f"invalid value: {raw}: {PREFIX}target-burst-capacity")
    # validateWindow
    if (raw := a.get(PREFIX + "window")) is not None:
        seconds = _duration(raw)
        if seconds is None:
            errors.append(f"invalid value: {raw}: {PREFIX}window")
        elif not WINDOW_MIN_S <= seconds <= WINDOW_MAX_S:
            errors.append(f"expected 6s <= {raw} <= 1h0m0s: {PREFIX}window")
        elif seconds != int(seconds):
            errors.append(f"must be specified with at most second precision: {PREFIX}window")
    # validateLastPodRetention and validateScaleDownDelay
    for name in ("scale-to-zero-pod-retention-period", "scale-down-delay"):
        if (raw := a.get(PREFIX + name)) is not None:
            seconds = _duration(raw)
            if seconds is None:
                errors.append(f"invalid value: {raw}: {PREFIX}{name}")
            elif not 0 <= seconds <= WINDOW_MAX_S:
                errors.append(f"expected 0s <= {raw} <= 1h0m0s: {PREFIX}{name}")
            elif name == "scale-down-delay" and seconds != round(seconds):
                errors.append(f"must be specified with at most second precision: {PREFIX}{name}")
    # validateMetric: KPA takes concurrency or rps.
    if (metric := a.get(PREFIX + "metric")) is not None:
        effective_class = a.get(PREFIX + "class", str(config["pod-autoscaler-class"]))
        refused = (effective_class == KPA and metric not in ("concurrency", "rps")) or (
            effective_class == HPA and metric == ""
        )
        if refused:
            errors.append(f"invalid value: {metric}: {PREFIX}metric")
    # validateInitialScale
    if (raw := a.get(PREFIX + "initial-scale")) is not None:
        try:
            initial = int(raw)
        except ValueError:
            errors.append(f"invalid value: {raw}: {PREFIX}initial-scale")
        else:
            if initial < 0:
                errors.append(f"invalid value: {raw}: {PREFIX}initial-scale must be greater than 0")
            elif initial == 0 and not config["allow-zero-initial-scale"]:
                errors.append(
                    f"invalid value: {raw}: {PREFIX}initial-scale=0 not allowed by cluster"
                )
    return errors
