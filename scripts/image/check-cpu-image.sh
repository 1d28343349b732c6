#!/usr/bin/env bash
# `make image-check`: builds the CPU image with podman and runs it the way the
# rendered chart runs it (tests/image, pytest; its last line counts passes and
# failures). Steps, each skipped when its result is already there:
#   1. podman, buildah, debootstrap, runc (apt-get, as root)   podman-env.sh
#   2. the Debian base image, made with debootstrap            debian-base.sh
#   3. the CPU image, with the venv build's llama-cpp-python    build-cpu-image.sh
#   4. the warm Job and the predictor run as the chart says    tests/image
#
# It needs root (podman with runc, as configured by containers.conf). Where
# that or the tools are missing, it skips with the reason; in CI (CI set) the
# same is a failure, never a skip.
#
# Usage: scripts/image/check-cpu-image.sh    (KZERO_IMAGE names the tag to build and check)
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/image/podman-env.sh
IMAGE="${KZERO_IMAGE:-localhost/kzero-cpu:check}"

cannot_run() {
  if [[ -n "${CI:-}" ]]; then
    echo "image-check: FAILED: $1" >&2
    exit 1
  fi
  echo "image-check: SKIPPED: $1"
  exit 0
}

[[ "$(id -u)" == 0 ]] || cannot_run "needs root (podman runs as root with runc here, see docs/image.md)"
ensure_image_tools || cannot_run "podman, buildah, debootstrap, runc or iptables is missing"
[[ -x .venv/bin/python ]] || cannot_run "no .venv: run make setup"

started=$SECONDS
scripts/image/debian-base.sh
scripts/image/build-cpu-image.sh "$IMAGE"
scripts/image/image-size.sh "$IMAGE"
KZERO_IMAGE="$IMAGE" .venv/bin/python -m pytest tests/image -p no:cacheprovider -q
echo "image-check: done in $((SECONDS - started)) s"
