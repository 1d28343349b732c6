"""Validates KServe objects against the CRD openAPIV3Schemas KServe ships.

The schemas are in schemas/ (README.md there names the source and commit). The
rules are the Kubernetes API server's for a structural schema
(apiextensions-apiserver): a field that no `properties` names, no
`additionalProperties` admits and no `x-kubernetes-preserve-unknown-fields`
keeps is unknown, which the API server prunes silently or, with strict field
validation, refuses; here it is an error either way. Also checked: type,
required, enum, pattern, int32/int64 ranges, minimum/maximum, min/max length
and items, int-or-string, nullable, and the keys of list-type map and set lists.
ObjectMeta is the API server's own type, checked against the Kubernetes client's.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes.client.models as k8s

SCHEMAS = Path(__file__).parent / "schemas"
KINDS = {
    ("serving.kserve.io/v1beta1", "InferenceService"): "InferenceService.v1beta1.json",
    ("serving.kserve.io/v1alpha1", "ServingRuntime"): "ServingRuntime.v1alpha1.json",
    ("serving.kserve.io/v1alpha1", "ClusterServingRuntime"): "ClusterServingRuntime.v1alpha1.json",
}
_INT_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}
_METADATA_FIELDS = set(k8s.V1ObjectMeta.attribute_map.values())
Schema = dict[str, Any]


@cache
def load(filename: str) -> Schema:
    return json.loads((SCHEMAS / filename).read_text())


def _type_ok(value: Any, schema: Schema) -> bool:
    if schema.get("x-kubernetes-int-or-string"):
        return isinstance(value, (int, str)) and not isinstance(value, bool)
    expected = schema.get("type")
    if expected is None:
        return True
    checks = {
        "object": lambda v: isinstance(v, dict),
        "array": lambda v: isinstance(v, list),
        "string": lambda v: isinstance(v, str),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
    }
    return checks[expected](value)


def _check(value: Any, schema: Schema, path: str, errors: list[str]) -> None:
    if value is None:
        if not schema.get("nullable"):
            errors.append(f"{path}: null is not allowed")
        return
    if not _type_ok(value, schema):
        errors.append(
            f"{path}: expected {schema.get('type', 'int-or-string')}, got {type(value).__name__} {value!r}"
        )
        return
    options = [] if schema.get("x-kubernetes-int-or-string") else schema.get("anyOf", [])
    if options and not any(_type_ok(value, option) for option in options):
        errors.append(f"{path}: matches none of anyOf")
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: {value!r} is not one of {schema['enum']}")
    if isinstance(value, str):
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(f"{path}: {value!r} does not match {schema['pattern']}")
        if len(value) < schema.get("minLength", 0) or len(value) > schema.get(
            "maxLength", len(value)
        ):
            errors.append(f"{path}: length {len(value)} out of bounds")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        low, high = _INT_RANGES.get(schema.get("format", ""), (None, None))
        low = schema.get("minimum", low)
        high = schema.get("maximum", high)
        if (low is not None and value < low) or (high is not None and value > high):
            errors.append(f"{path}: {value} out of [{low}, {high}]")
    if isinstance(value, list):
        _check_list(value, schema, path, errors)
    if isinstance(value, dict):
        _check_object(value, schema, path, errors)


def _check_list(value: list, schema: Schema, path: str, errors: list[str]) -> None:
    if len(value) < schema.get("minItems", 0):
        errors.append(f"{path}: fewer than {schema['minItems']} items")
    for index, item in enumerate(value):
        _check(item, schema.get("items", {}), f"{path}[{index}]", errors)
    list_type = schema.get("x-kubernetes-list-type")
    if list_type == "map":
        keys = schema.get("x-kubernetes-list-map-keys", [])
        seen = [tuple(item.get(k) for k in keys) for item in value if isinstance(item, dict)]
        if len(seen) != len(set(seen)):
            errors.append(f"{path}: duplicate entries for list-map keys {keys}")
    elif list_type == "set" and len({json.dumps(v, sort_keys=True) for v in value}) != len(value):
        errors.append(f"{path}: duplicate entries in a set")


def _check_object(value: dict, schema: Schema, path: str, errors: list[str]) -> None:
    properties = schema.get("properties", {})
    extra = schema.get("additionalProperties")
    for key, item in value.items():
        where = f"{path}.{key}"
        if key in properties:
            _check(item, properties[key], where, errors)
        elif isinstance(extra, dict):
            _check(item, extra, where, errors)
        elif extra is True or schema.get("x-kubernetes-preserve-unknown-fields"):
            continue
        else:
            errors.append(f"{where}: unknown field (not in the CRD schema)")
    for key in schema.get("required", []):
        if key not in value:
            errors.append(f"{path}.{key}: required")


def _check_metadata(metadata: Any, path: str, errors: list[str]) -> None:
    if not isinstance(metadata, dict):
        errors.append(f"{path}: expected an object")
        return
    for key, item in metadata.items():
        if key not in _METADATA_FIELDS:
            errors.append(f"{path}.{key}: unknown field of ObjectMeta")
        elif key in ("labels", "annotations") and not (
            isinstance(item, dict) and all(isinstance(v, str) for v in item.values())
        ):
            errors.append(f"{path}.{key}: must map strings to strings")
    if "name" not in metadata:
        errors.append(f"{path}.name: required")


def validate(obj: dict[str, Any]) -> list[str]:
    """Every problem with one KServe object, each as 'path: what'. Empty when valid."""
    key = (obj.get("apiVersion"), obj.get("kind"))
    if key not in KINDS:
        return [f"not a KServe kind with a stored schema: {key}"]
    errors: list[str] = []
    schema = load(KINDS[key])
    body = {k: v for k, v in obj.items() if k != "metadata"}
    _check(body, {**schema, "properties": {k: v for k, v in schema["properties"].items() if k != "metadata"}},
           obj["kind"], errors)  # fmt: skip
    _check_metadata(obj.get("metadata"), f"{obj['kind']}.metadata", errors)
    return errors
