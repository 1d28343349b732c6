"""What the kind e2e suite installs is checked here too, where no cluster is needed."""

from __future__ import annotations

import importlib.metadata
import re

import kubernetes_validate
import yaml

from . import kserve_schema, kserve_strict
from .helm_cli import REPO, template
from .pod_specs import pod_specs
from .test_pod_security import _violations

E2E = REPO / "tests" / "e2e"


VERSIONS = dict(
    line.split("=", 1)
    for line in (REPO / "scripts" / "kind" / "versions.env").read_text().splitlines()
    if line and not line.startswith("#")
)


def kind_kubernetes_version() -> str:
    """The Kubernetes version of the pinned kind node image, e.g. 1.34.0."""
    image = VERSIONS["KIND_NODE_IMAGE"]
    match = re.fullmatch(r"kindest/node:v(\d+\.\d+\.\d+)@sha256:[0-9a-f]{64}", image)
    assert match, f"KIND_NODE_IMAGE is not a digest-pinned kindest/node image: {image}"
    return match.group(1)


def test_e2e_values_render_valid_restricted_objects() -> None:
    objects = template("-f", str(E2E / "values.yaml"), namespace="kzero-e2e")
    for obj in objects:
        if (obj["apiVersion"], obj["kind"]) in kserve_strict.KINDS:
            assert kserve_strict.validate(obj) == []
            assert kserve_schema.validate(obj) == []
        else:
            kubernetes_validate.validate(obj, kind_kubernetes_version(), strict=True)
    assert [v for spec in pod_specs(objects) for v in _violations(spec)] == []


def test_e2e_model_uri_points_at_the_in_cluster_file_server() -> None:
    values = yaml.safe_load((E2E / "values.yaml").read_text())
    uri = values["models"][0]["uri"]
    assert uri.startswith(f"http://model-files.{VERSIONS['E2E_NAMESPACE']}.svc.cluster.local:8000/")


def test_e2e_runs_with_api_keys_from_the_secret_the_install_script_creates() -> None:
    values = yaml.safe_load((E2E / "values.yaml").read_text())
    assert values["auth"]["existingSecret"] == VERSIONS["E2E_API_KEY_SECRET"]
    install = (REPO / "scripts" / "kind" / "install-kzero.sh").read_text()
    # Created before `helm upgrade --install`, so no predictor waits on a missing volume.
    creates = install.index('create secret generic "$E2E_API_KEY_SECRET"')
    assert creates < install.index("helm upgrade")


def test_kind_node_runs_a_kubernetes_the_chart_and_knative_support() -> None:
    major, minor, _ = (int(part) for part in kind_kubernetes_version().split("."))
    chart = yaml.safe_load((REPO / "charts" / "kzero" / "Chart.yaml").read_text())
    chart_minimum = re.match(r">=(\d+)\.(\d+)", chart["kubeVersion"])
    assert chart_minimum and (major, minor) >= tuple(int(g) for g in chart_minimum.groups())
    # Knative Serving 1.21 needs Kubernetes 1.33 or newer.
    assert VERSIONS["KNATIVE_SERVING_VERSION"].startswith("v1.21.") and (major, minor) >= (1, 33)
    # net-kourier is released per Knative minor: the two minors must match.
    serving_minor = VERSIONS["KNATIVE_SERVING_VERSION"].rsplit(".", 1)[0]
    assert VERSIONS["KNATIVE_KOURIER_VERSION"].rsplit(".", 1)[0] == serving_minor


def test_model_file_server_manifest_is_valid() -> None:
    docs = list(yaml.safe_load_all((E2E / "model-files.yaml").read_text()))
    assert {doc["kind"] for doc in docs} == {"Deployment", "Service"}
    for doc in docs:
        kubernetes_validate.validate(doc, kind_kubernetes_version(), strict=True)


def test_kserve_release_is_the_one_whose_sdk_validates_the_chart() -> None:
    # kserve_strict.py checks the chart's InferenceServices against this SDK's models.
    assert VERSIONS["KSERVE_VERSION"] == f"v{importlib.metadata.version('kserve')}"


# knative/serving pkg/deployment/config.go, defaultConfig: the registries whose
# tags Knative does not resolve to digests (digestResolver.Resolve in
# pkg/reconciler/revision/resolve.go returns early for them).
REGISTRIES_SKIPPING_TAG_RESOLVING = {"kind.local", "ko.local", "dev.local"}


def registry(image: str) -> str:
    """The registry of an image reference, as go-containerregistry's name.NewTag reads it."""
    first, _, rest = image.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return first
    return "index.docker.io"


def test_e2e_image_is_in_a_registry_knative_does_not_resolve() -> None:
    # A bare kzero-cpu:e2e is docker.io/library/kzero-cpu: Knative asks Docker
    # Hub for its digest, fails, and the revision reports ContainerMissing,
    # whatever the pull policy.
    assert registry(VERSIONS["E2E_CPU_IMAGE"]) in REGISTRIES_SKIPPING_TAG_RESOLVING
    assert registry("kzero-cpu:e2e") == "index.docker.io"


def test_kind_setup_waits_for_knative_before_patching_its_configmaps() -> None:
    # The ConfigMap webhook (failurePolicy Fail) must be up before any patch.
    lines = (REPO / "scripts" / "kind" / "up.sh").read_text().splitlines()
    waits = [
        i for i, line in enumerate(lines) if line.strip() == "wait_deployments knative-serving"
    ]
    patches = [
        i for i, line in enumerate(lines) if re.search(r"kubectl -n knative-serving patch", line)
    ]
    assert waits and patches
    assert waits[0] < patches[0], "up.sh patches a Knative ConfigMap before its webhook is up"
