#!/usr/bin/env bash
# Installs kzero into the kind cluster for the e2e suite: a small in-cluster
# HTTP server that serves the bundled GGUF (so the warm Job really downloads,
# without internet), then the chart with tests/e2e/values.yaml and the CPU
# image that `make kind-image` loaded. Versions: scripts/kind/versions.env.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=versions.env
source scripts/kind/versions.env
export PATH="$PWD/.tools/bin:$PATH"
kubectl config use-context "kind-$KIND_CLUSTER"

kubectl create namespace "$E2E_NAMESPACE" --dry-run=client -o yaml | kubectl apply -f -
# The API key Secret that tests/e2e/values.yaml names (auth.existingSecret):
# created once with a random key, kept across re-runs so running pods and the
# suite agree on it. The key never leaves the cluster except to the suite.
if ! kubectl -n "$E2E_NAMESPACE" get secret "$E2E_API_KEY_SECRET" >/dev/null 2>&1; then
  keys="$(mktemp)"
  trap 'rm -f "$keys"' EXIT
  printf '# kzero e2e API key, one per line\nkz-%s\n' \
    "$(head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')" >"$keys"
  kubectl -n "$E2E_NAMESPACE" create secret generic "$E2E_API_KEY_SECRET" --from-file=api-keys="$keys"
fi
sed "s|IMAGE|${E2E_CPU_IMAGE}|" tests/e2e/model-files.yaml | kubectl -n "$E2E_NAMESPACE" apply -f -
kubectl -n "$E2E_NAMESPACE" rollout status deployment/model-files --timeout=300s

repository="${E2E_CPU_IMAGE%:*}"
tag="${E2E_CPU_IMAGE##*:}"
helm upgrade --install kzero charts/kzero --namespace "$E2E_NAMESPACE" \
  -f tests/e2e/values.yaml \
  --set "image.cpu.repository=$repository" --set "image.cpu.tag=$tag" \
  --set image.cpu.pullPolicy=Never \
  --set "image.warm.repository=$repository" --set "image.warm.tag=$tag" \
  --set image.warm.pullPolicy=Never \
  --timeout 15m
