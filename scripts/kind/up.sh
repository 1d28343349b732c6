#!/usr/bin/env bash
# Creates the kind cluster and installs what kzero runs on: cert-manager,
# Knative Serving with Kourier (plus kzero's Knative settings), KServe in
# serverless (Knative) mode, and Prometheus with Grafana. Versions come from
# scripts/kind/versions.env. Needs docker, kubectl and helm; installs kind into
# .tools/bin when missing. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=versions.env
source scripts/kind/versions.env
export PATH="$PWD/.tools/bin:$PATH"

if ! command -v kind >/dev/null || [[ "$(kind version -q 2>/dev/null)" != "$KIND_VERSION" ]]; then
  mkdir -p .tools/bin
  curl -fsSLo .tools/bin/kind "https://kind.sigs.k8s.io/dl/${KIND_VERSION}/kind-linux-amd64"
  chmod +x .tools/bin/kind
fi

if ! kind get clusters | grep -qx "$KIND_CLUSTER"; then
  mkdir -p /tmp/kzero-kind-local-path
  kind create cluster --name "$KIND_CLUSTER" --config kind-config.yaml --image "$KIND_NODE_IMAGE" --wait 120s
fi
kubectl config use-context "kind-$KIND_CLUSTER"

wait_deployments() {  # wait_deployments NAMESPACE
  kubectl -n "$1" wait deployment --all --for=condition=Available --timeout=600s
}

echo "== cert-manager $CERT_MANAGER_VERSION"
kubectl apply -f "https://github.com/cert-manager/cert-manager/releases/download/${CERT_MANAGER_VERSION}/cert-manager.yaml"
wait_deployments cert-manager

echo "== Knative Serving $KNATIVE_SERVING_VERSION + Kourier $KNATIVE_KOURIER_VERSION"
KNATIVE="https://github.com/knative/serving/releases/download/knative-${KNATIVE_SERVING_VERSION}"
kubectl apply -f "$KNATIVE/serving-crds.yaml"
kubectl apply -f "$KNATIVE/serving-core.yaml"
# net-kourier moved from the knative org to knative-extensions; its releases are there.
kubectl apply -f "https://github.com/knative-extensions/net-kourier/releases/download/knative-${KNATIVE_KOURIER_VERSION}/kourier.yaml"
# Knative's ConfigMap webhook (failurePolicy Fail) judges every change to its
# ConfigMaps: patching before the webhook deployment is Available races its
# start and fails. Wait for all of knative-serving (webhook included) first.
wait_deployments knative-serving
kubectl -n knative-serving patch configmap/config-network --type merge \
  -p '{"data":{"ingress-class":"kourier.ingress.networking.knative.dev"}}'
# kzero's Knative settings (PVC/nodeSelector/tolerations/affinity features,
# KPA, timeouts) as merge patches: a whole-ConfigMap `kubectl apply` would
# delete the keys serving-core.yaml ships, and the webhook refuses losing
# config-deployment's queue-sidecar-image.
for name in features autoscaler deployment defaults; do
  kubectl -n knative-serving patch "configmap/config-$name" --type merge \
    --patch-file "autoscaling/knative/config-$name.yaml"
done
wait_deployments kourier-system
kubectl -n kourier-system patch service kourier \
  -p "{\"spec\":{\"type\":\"NodePort\",\"ports\":[{\"port\":80,\"nodePort\":${E2E_INGRESS_PORT}}]}}"

echo "== KServe $KSERVE_VERSION (Knative mode)"
# kserve.yaml holds the CRDs and the controller; server-side apply because the
# InferenceService CRD is too large for the last-applied annotation. KServe's
# default deployment mode is Standard since 0.16: the chart's InferenceServices
# ask for Knative mode with their serving.kserve.io/deploymentMode annotation.
KSERVE="https://github.com/kserve/kserve/releases/download/${KSERVE_VERSION}"
kubectl apply --server-side -f "$KSERVE/kserve.yaml"
wait_deployments kserve
kubectl apply --server-side -f "$KSERVE/kserve-cluster-resources.yaml"
# With Kourier instead of Istio, KServe must not create Istio VirtualServices.
kubectl -n kserve get configmap inferenceservice-config -o json | python3 -c '
import json, sys
cm = json.load(sys.stdin)
ingress = json.loads(cm["data"]["ingress"])
ingress["disableIstioVirtualHost"] = True
cm["data"]["ingress"] = json.dumps(ingress)
json.dump(cm, sys.stdout)' | kubectl apply -f -

echo "== Prometheus + Grafana (kube-prometheus-stack $KUBE_PROMETHEUS_STACK_VERSION)"
helm upgrade --install monitoring kube-prometheus-stack \
  --repo https://prometheus-community.github.io/helm-charts \
  --version "$KUBE_PROMETHEUS_STACK_VERSION" --namespace monitoring --create-namespace \
  --set prometheus.prometheusSpec.podMonitorSelectorNilUsesHelmValues=false \
  --set prometheus.prometheusSpec.ruleSelectorNilUsesHelmValues=false \
  --set grafana.sidecar.dashboards.enabled=true \
  --set grafana.sidecar.dashboards.searchNamespace=ALL \
  --set alertmanager.enabled=false \
  --wait --timeout 10m
echo "kind cluster $KIND_CLUSTER is ready"
