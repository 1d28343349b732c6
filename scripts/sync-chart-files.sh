#!/usr/bin/env bash
# Copies the dashboard and Prometheus rules from dashboards/ (their source of
# truth, generated and tested there) into charts/kzero/files/, because Helm can
# read only files inside the chart. tests/chart/test_manifests_drift.py fails
# when the copies differ: run this script, then scripts/render-manifests.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p charts/kzero/files
cp dashboards/kzero-overview.json charts/kzero/files/kzero-overview.json
cp dashboards/rules/kzero-rules.yaml charts/kzero/files/kzero-rules.yaml
