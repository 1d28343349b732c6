"""What the kind e2e suite installs is checked here too, where no cluster is needed."""

from __future__ import annotations

import kubernetes_validate
import yaml

from . import kserve_strict
from .helm_cli import REPO, template
from .pod_specs import pod_specs
from .test_pod_security import _violations

E2E = REPO / "tests" / "e2e"


def test_e2e_values_render_valid_restricted_objects() -> None:
    objects = template("-f", str(E2E / "values.yaml"), namespace="kzero-e2e")
    for obj in objects:
        if (obj["apiVersion"], obj["kind"]) in kserve_strict.KINDS:
            assert kserve_strict.validate(obj) == []
        else:
            kubernetes_validate.validate(obj, "1.32.0", strict=True)
    assert [v for spec in pod_specs(objects) for v in _violations(spec)] == []


def test_e2e_model_uri_points_at_the_in_cluster_file_server() -> None:
    values = yaml.safe_load((E2E / "values.yaml").read_text())
    versions = dict(
        line.split("=", 1)
        for line in (REPO / "scripts" / "kind" / "versions.env").read_text().splitlines()
        if line and not line.startswith("#")
    )
    uri = values["models"][0]["uri"]
    assert uri.startswith(f"http://model-files.{versions['E2E_NAMESPACE']}.svc.cluster.local:8000/")


def test_model_file_server_manifest_is_valid() -> None:
    docs = list(yaml.safe_load_all((E2E / "model-files.yaml").read_text()))
    assert {doc["kind"] for doc in docs} == {"Deployment", "Service"}
    for doc in docs:
        kubernetes_validate.validate(doc, "1.32.0", strict=True)
