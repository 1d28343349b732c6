"""Strict validation of KServe objects against the kserve SDK's generated models.

The SDK's model classes (``kserve.models.*``, and ``kubernetes.client.models.*``
for the embedded Kubernetes types) list every field in ``attribute_map`` (JSON
name -> Python name) and its type in ``openapi_types``. Walking a rendered
object through them catches unknown fields (a typo the API server would prune
or reject), wrong types and missing required fields.
"""

from __future__ import annotations

import re
from typing import Any

import kserve.models
import kubernetes.client.models

# kserve's generator writes list[X] and dict(str, X); kubernetes 37's List[X] and Dict[str, X].
_LIST = re.compile(r"^[Ll]ist\[(?P<item>.+)\]$")
_DICT = re.compile(r"^(?:dict\(str, (?P<a>.+)\)|Dict\[str, (?P<b>.+)\])$")
_SCALARS: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "datetime": (str,),
    "date": (str,),
    # A Kubernetes quantity: "2", "512Mi", or a bare YAML number.
    "ResourceQuantity": (str, int, float),
}

KINDS = {
    ("serving.kserve.io/v1beta1", "InferenceService"): "V1beta1InferenceService",
    ("serving.kserve.io/v1alpha1", "ClusterServingRuntime"): "V1alpha1ClusterServingRuntime",
    ("serving.kserve.io/v1alpha1", "ServingRuntime"): "V1alpha1ServingRuntime",
}


def _model_class(name: str) -> type:
    for module in (kserve.models, kubernetes.client.models):
        if hasattr(module, name):
            return getattr(module, name)
    raise LookupError(f"no SDK model named {name}")


def _check(value: Any, type_name: str, path: str, errors: list[str]) -> None:
    if type_name == "object" or value is None:
        return
    if type_name in _SCALARS:
        expected = _SCALARS[type_name]
        # bool is an int in Python; an int field given `true` is still wrong.
        if not isinstance(value, expected) or (type_name != "bool" and isinstance(value, bool)):
            errors.append(f"{path}: expected {type_name}, got {type(value).__name__} {value!r}")
        return
    if match := _LIST.match(type_name):
        if not isinstance(value, list):
            errors.append(f"{path}: expected a list, got {type(value).__name__}")
            return
        for index, item in enumerate(value):
            _check(item, match.group("item"), f"{path}[{index}]", errors)
        return
    if match := _DICT.match(type_name):
        if not isinstance(value, dict):
            errors.append(f"{path}: expected a mapping, got {type(value).__name__}")
            return
        for key, item in value.items():
            _check(item, match.group("a") or match.group("b"), f"{path}.{key}", errors)
        return
    _check_model(value, _model_class(type_name), path, errors)


def _check_model(value: Any, cls: type, path: str, errors: list[str]) -> None:
    if not isinstance(value, dict):
        errors.append(f"{path}: expected a {cls.__name__} mapping, got {type(value).__name__}")
        return
    python_name = {json_name: attr for attr, json_name in cls.attribute_map.items()}
    for key, item in value.items():
        if key not in python_name:
            errors.append(f"{path}.{key}: unknown field for {cls.__name__}")
            continue
        _check(item, cls.openapi_types[python_name[key]], f"{path}.{key}", errors)
    present = {python_name[key] for key in value if key in python_name}
    for missing in _required(cls) - present:
        errors.append(f"{path}.{cls.attribute_map[missing]}: required by {cls.__name__}")


def _required(cls: type) -> set[str]:
    """Python names of the required fields of an SDK model class."""
    if hasattr(cls, "model_fields"):  # kubernetes >= 35: pydantic models
        return {name for name, field in cls.model_fields.items() if field.is_required()}
    # kserve's generated classes raise ValueError for a required field left None.
    required = set()
    for name in cls.openapi_types:
        others = {other: "x" for other in cls.openapi_types if other != name}
        try:
            cls(**others)
        except (ValueError, TypeError):
            required.add(name)
    return required


def validate(obj: dict[str, Any]) -> list[str]:
    """Every problem found in one KServe object, each as 'path: what'. Empty when valid."""
    key = (obj.get("apiVersion"), obj.get("kind"))
    if key not in KINDS:
        return [f"not a KServe kind this validator knows: {key}"]
    errors: list[str] = []
    _check_model(obj, _model_class(KINDS[key]), obj["kind"], errors)
    return errors
