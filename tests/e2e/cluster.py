"""Connects to the kind cluster with the kubernetes Python client, or says why not."""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path

from kubernetes import client, config
from kubernetes.config.config_exception import ConfigException

REPO = Path(__file__).resolve().parents[2]


def _versions() -> dict[str, str]:
    """scripts/kind/versions.env, the one place the e2e environment is pinned."""
    pairs = {}
    for line in (REPO / "scripts" / "kind" / "versions.env").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip()
    return pairs


VERSIONS = _versions()
CONTEXT = os.environ.get("KZERO_E2E_CONTEXT", f"kind-{VERSIONS['KIND_CLUSTER']}")
NAMESPACE = os.environ.get("KZERO_E2E_NAMESPACE", VERSIONS["E2E_NAMESPACE"])
MODEL = os.environ.get("KZERO_E2E_MODEL", "smollm2")
INGRESS = os.environ.get("KZERO_E2E_INGRESS", f"http://127.0.0.1:{VERSIONS['E2E_INGRESS_PORT']}")
# scripts/kind/install-kzero.sh creates it; tests/e2e/values.yaml names it in auth.existingSecret.
API_KEY_SECRET = VERSIONS["E2E_API_KEY_SECRET"]


@dataclass(frozen=True)
class Cluster:
    api: client.ApiClient
    core: client.CoreV1Api
    custom: client.CustomObjectsApi


def first_api_key(key_file: str) -> str:
    """The predictor's rule for a key file: one key per line, blank and '#' lines skipped."""
    for line in key_file.splitlines():
        if line.strip() and not line.startswith("#"):
            return line.strip()
    raise AssertionError("the API key file holds no key")


def api_key(cluster: Cluster) -> str:
    """The first key of the e2e API key Secret, which the predictors mount as their key file."""
    secret = cluster.core.read_namespaced_secret(API_KEY_SECRET, NAMESPACE)
    return first_api_key(base64.b64decode(secret.data["api-keys"]).decode())


def connect() -> Cluster | str:
    """The cluster's clients, or the reason the e2e suite cannot run (to skip with)."""
    # Read $KUBECONFIG now: the client captured it when it was imported.
    kubeconfig = os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
    if not any(os.path.exists(path) for path in kubeconfig.split(os.pathsep)):
        return f"no kubeconfig at {kubeconfig}; `make kind-e2e` creates the kind cluster"
    try:
        contexts, _ = config.list_kube_config_contexts(config_file=kubeconfig)
    except (ConfigException, FileNotFoundError) as exc:
        return f"no kubeconfig ({exc}); `make kind-e2e` creates the kind cluster"
    if CONTEXT not in {context["name"] for context in contexts}:
        return f"no kube context {CONTEXT!r}; `make kind-e2e` creates it"
    # Only ever the kind cluster: the suite installs, scales and deletes things.
    api = config.new_client_from_config(config_file=kubeconfig, context=CONTEXT)
    try:
        client.VersionApi(api).get_code(_request_timeout=5)
    except Exception as exc:  # any transport error means: no cluster to test
        return f"kind cluster {CONTEXT!r} is not reachable: {type(exc).__name__}: {exc}"
    custom = client.CustomObjectsApi(api)
    try:
        custom.get_namespaced_custom_object(
            "serving.kserve.io", "v1beta1", NAMESPACE, "inferenceservices", MODEL
        )
    except client.ApiException as exc:
        return (
            f"InferenceService {NAMESPACE}/{MODEL} not found (HTTP {exc.status}); "
            "`make kind-e2e` installs it"
        )
    return Cluster(api, client.CoreV1Api(api), custom)
