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
sed "s|IMAGE|${E2E_CPU_IMAGE}|" tests/e2e/model-files.yaml | kubectl -n "$E2E_NAMESPACE" apply -f -
kubectl -n "$E2E_NAMESPACE" rollout status deployment/model-files --timeout=300s

repository="${E2E_CPU_IMAGE%:*}"
tag="${E2E_CPU_IMAGE##*:}"
helm upgrade --install kzero charts/kzero --namespace "$E2E_NAMESPACE" \
  -f tests/e2e/values.yaml \
  --set "image.cpu.repository=$repository" --set "image.cpu.tag=$tag" \
  --set image.cpu.pullPolicy=Never \
  --timeout 15m
